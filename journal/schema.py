"""Tables of the SQLite journal, created through sqlite-utils.

`events` is the source of truth; everything in PROJECTIONS is derived from it and may be
dropped and rebuilt at any time (DESIGN §3.4).
"""
from __future__ import annotations

from sqlite_utils import Database

SCHEMA_VERSION = "1"
APPEND_ONLY = "journal events are append-only"

# Projection table -> its primary key, which is also the order snapshots are taken in.
PROJECTIONS: dict[str, tuple[str, ...]] = {
    "runs": ("run",),
    "entries": ("run", "entry"),
    "record_index": ("run", "entry", "pos"),
}


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
        },
        pk="run",
        if_not_exists=True,
    )
    db.table("entries").create(
        {
            "run": str, "entry": int, "entity": str, "op": str, "records": int,
            "state": str, "error": str, "created": int, "skipped": int, "updated": int,
            "failed": int, "retries": int, "planned_at": str, "applied_at": str,
            "planned_seq": int, "applied_seq": int,  # find the stored events in O(1)
            "outcomes": bytes,  # msgpack list of the latest outcomes, read by history()
        },
        pk=("run", "entry"),
        if_not_exists=True,
    )
    db.table("record_index").create(
        {"entity": str, "key": str, "run": str, "entry": int, "pos": int, "hash": str},
        pk=PROJECTIONS["record_index"],
        if_not_exists=True,
    )
    # history(key) must stay in milliseconds on millions of indexed records.
    db.table("record_index").create_index(["key", "entity"], if_not_exists=True)


def drop_projections(db: Database) -> None:
    for table in PROJECTIONS:
        db.execute(f"DROP TABLE IF EXISTS {table}")
