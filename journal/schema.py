"""Tables of the SQLite journal, created through sqlite-utils.

`events` is the source of truth; everything in PROJECTIONS is derived from it and may be
dropped and rebuilt at any time (architecture §3.4).
"""
from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the callers that create tables: opening a journal needs none
    from sqlite_utils import Database

SCHEMA_VERSION = "1"
# The projections' layout: a journal whose projections were built by another layout has them
# dropped and rebuilt from its events when opened (they are derived data).
PROJECTIONS_VERSION = "7"
APPEND_ONLY = "journal events are append-only"

# Projection table -> its primary key, which is also the order snapshots are taken in.
PROJECTIONS: dict[str, tuple[str, ...]] = {
    "runs": ("run",),
    "entries": ("run", "entry"),
    "record_index": ("khash", "entry_id"),
    "tracking": ("name",),
    "marks": ("name",),
}


def is_current(conn: sqlite3.Connection) -> bool:
    """Whether the file already holds every table of this layout, so opening it needs no
    write (and no sqlite-utils): the versions match and the head file was adopted."""
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError:  # no meta table: a new file
        return False
    return (meta.get("schema_version") == SCHEMA_VERSION
            and meta.get("projections_version") == PROJECTIONS_VERSION and "head_file" in meta)


def create_event_log(db: Database) -> None:
    db.table("events").create(
        {"seq": int, "at": str, "run": str, "type": str, "body": bytes, "hash": str},
        pk="seq",
        not_null={"at", "run", "type", "body", "hash"},
        if_not_exists=True,
    )
    # read(run=...) and verify's per-run questions scan one run, not the whole log.
    db.table("events").create_index(["run", "seq"], if_not_exists=True)
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER IF NOT EXISTS events_no_{action.lower()} BEFORE {action} ON events "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )
    db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", [SCHEMA_VERSION])


def create_projections(db: Database) -> None:
    db.table("runs").create(
        {
            "run": str, "kind": str, "source": str, "target": str, "options": str,
            "status": str, "started_at": str, "sealed_at": str, "finished_at": str,
            "entries": int, "summary": str, "attempts": int, "error": str,
            "started_seq": int,  # orders runs newest first without trusting clocks
            "checkpoint": int,  # entries 1..checkpoint are sealed: an applier may apply them
            "apply_seq": int,  # the latest ApplyStarted: failures before it are retried by workers
        },
        pk="run",
        if_not_exists=True,
    )
    db.table("entries").create(
        {
            "run": str, "entry": int, "entity": str, "op": str, "records": int,
            "state": str, "error": str, "created": int, "skipped": int, "updated": int,
            "failed": int, "deleted": int, "retries": int, "planned_at": str, "applied_at": str,
            "planned_seq": int, "applied_seq": int,  # find the stored events in O(1)
            "outcomes": bytes,  # msgpack list of the latest outcomes, read by history()
            "worker": str,  # EntryApplied.worker of the latest outcome
        },
        pk=("run", "entry"),
        if_not_exists=True,
    )
    # history() joins the record index to its entries by the EntryPlanned seq.
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS entries_planned_seq ON entries (planned_seq)")
    # Key hash -> planned entries, filled lazily (journal/index.py): one compact B-tree, so
    # history(key) is one probe on millions of records and appends never pay for it.
    db.execute(
        "CREATE TABLE IF NOT EXISTS record_index (khash INTEGER NOT NULL, entry_id INTEGER NOT NULL,"
        " PRIMARY KEY (khash, entry_id)) WITHOUT ROWID"
    )
    # Named high-water marks (MarkAdvanced): the latest position per name; value and key as JSON.
    db.table("marks").create(
        {"name": str, "column": str, "value": str, "key": str, "run": str, "at": str, "seq": int},
        pk="name",
        if_not_exists=True,
    )
    # How far lazily built projections have caught up with the log (event seq).
    db.table("tracking").create({"name": str, "seq": int}, pk="name", not_null={"seq"}, if_not_exists=True)
    db.execute("INSERT OR IGNORE INTO tracking (name, seq) VALUES ('record_index', 0)")


def projections_version(db: Database) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = 'projections_version'").fetchone()
    return None if row is None else str(row[0])


def set_projections_version(db: Database) -> None:
    db.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('projections_version', ?)", [PROJECTIONS_VERSION]
    )


def drop_projections(db: Database) -> None:
    for table in PROJECTIONS:
        db.execute(f"DROP TABLE IF EXISTS {table}")
