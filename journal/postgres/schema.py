"""Tables of the Postgres journal, in their own schema (the URL's `?schema=`, default
`syncd_journal`): the same tables as the SQLite journal (journal/schema.py), plus `head`
(the chain's head kept outside `events`, the SQLite journal's sidecar file) and `leases`
(which worker holds which entry: coordination, not history, so not a projection).

`events` refuses UPDATE, DELETE and TRUNCATE by trigger; its bodies are stored without
Postgres's own compression (entry payloads are zlib already: it would only cost CPU); appends are serialised by a
transaction-level advisory lock (journal/postgres/journal.py), so seq and the hash chain
form one total order whatever the number of writers.
"""
from __future__ import annotations

from psycopg import sql

from ..schema import APPEND_ONLY, PROJECTIONS, PROJECTIONS_VERSION, SCHEMA_VERSION
from .connection import PgSql

EVENT_LOG = """
CREATE TABLE IF NOT EXISTS events (
    seq bigint PRIMARY KEY, at text NOT NULL, run text NOT NULL, type text NOT NULL,
    body bytea NOT NULL, hash text NOT NULL);
ALTER TABLE events ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX IF NOT EXISTS events_run_seq ON events (run, seq);
CREATE OR REPLACE FUNCTION refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION '{append_only}'; END $$;
CREATE OR REPLACE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();
CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text);
CREATE TABLE IF NOT EXISTS head (one integer PRIMARY KEY CHECK (one = 1), seq bigint NOT NULL,
    hash text NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    run text NOT NULL, entry integer NOT NULL, owner text NOT NULL, epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL, owner_pid integer NOT NULL, PRIMARY KEY (run, entry));
""".replace("{append_only}", APPEND_ONLY)

PROJECTION_TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    run text PRIMARY KEY, kind text, source text, target text, options text, status text,
    started_at text, sealed_at text, finished_at text, entries integer, summary text,
    attempts integer, error text, started_seq bigint, checkpoint integer, apply_seq bigint);
CREATE TABLE IF NOT EXISTS entries (
    run text NOT NULL, entry integer NOT NULL, entity text, op text, records integer,
    state text, error text, created integer, skipped integer, updated integer, failed integer,
    deleted integer, retries integer, planned_at text, applied_at text, planned_seq bigint,
    applied_seq bigint, outcomes bytea, worker text, PRIMARY KEY (run, entry));
CREATE UNIQUE INDEX IF NOT EXISTS entries_planned_seq ON entries (planned_seq);
CREATE INDEX IF NOT EXISTS entries_not_done ON entries (run, entry) WHERE state <> 'done';
CREATE TABLE IF NOT EXISTS record_index (
    khash bigint NOT NULL, entry_id bigint NOT NULL, PRIMARY KEY (khash, entry_id));
CREATE TABLE IF NOT EXISTS marks (
    name text PRIMARY KEY, "column" text, value text, key text, run text, at text, seq bigint);
CREATE TABLE IF NOT EXISTS tracking (name text PRIMARY KEY, seq bigint NOT NULL);
INSERT INTO tracking (name, seq) VALUES ('record_index', 0) ON CONFLICT DO NOTHING;
"""


def _script(conn: PgSql, script: str) -> None:
    for statement in script.split(";\n"):
        if statement.strip():
            conn.conn.execute(statement.strip().rstrip(";").encode())


def create(conn: PgSql, schema: str) -> None:
    """Create what is missing, inside the caller's transaction."""
    conn.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    _script(conn, EVENT_LOG)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                 (SCHEMA_VERSION,))
    conn.execute("INSERT INTO head (one, seq, hash) VALUES (1, 0, ?) ON CONFLICT DO NOTHING",
                 (bytes(32).hex(),))
    if _meta(conn, "projections_version") == PROJECTIONS_VERSION:
        create_projections(conn)


def create_projections(conn: PgSql) -> None:
    _script(conn, PROJECTION_TABLES)


def drop_projections(conn: PgSql) -> None:
    for table in PROJECTIONS:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def set_projections_version(conn: PgSql) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES ('projections_version', ?)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (PROJECTIONS_VERSION,))


def _meta(conn: PgSql, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def is_current(conn: PgSql) -> bool:
    """Whether every table of this layout is there (opening then writes nothing)."""
    found = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
    if not found:
        return False
    return (_meta(conn, "schema_version") == SCHEMA_VERSION
            and _meta(conn, "projections_version") == PROJECTIONS_VERSION)
