"""Read-side SQL over the projection tables, turned into row values.

Every function takes the connection and runs under the caller's lock; none holds a cursor
open after returning, so callers may interleave appends with paged reads.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from .errors import JournalIntegrityError
from .index import KeysHashes, keys_hashes_decoder, khash
from .rows import EntryRow, HistoryRow, MarkRow, RunRow
from .sql import NO_LIMIT, Sql, dialect
from .states import OUTCOMES, Outcome

_RUN_SELECT = """
SELECT r.run, r.kind, r.source, r.target, r.options, r.status, r.started_at, r.sealed_at,
       r.finished_at, r.entries, r.summary, r.attempts, r.error,
       COALESCE(SUM(e.created), 0), COALESCE(SUM(e.skipped), 0),
       COALESCE(SUM(e.updated), 0), COALESCE(SUM(e.failed), 0), COALESCE(SUM(e.deleted), 0),
       COALESCE(SUM(CASE WHEN e.op IN ('match', 'clone') THEN e.skipped END), 0), r.checkpoint
FROM runs r LEFT JOIN entries e ON e.run = r.run
"""

_ENTRY_COLUMNS = (
    "run, entry, entity, op, records, state, error, created, skipped, updated, failed, deleted, retries,"
    " planned_at, applied_at, worker"
)

# Candidate entries of a key hash; entries a restarted run forgot drop out of the join.
HISTORY_SELECT = """
SELECT e.planned_seq, e.run, e.entry, e.entity, e.op, e.planned_at, e.outcomes, e.applied_at,
       r.kind, r.source, r.target, r.status
FROM record_index ri
JOIN entries e ON e.planned_seq = ri.entry_id
JOIN runs r ON r.run = e.run
WHERE ri.khash = ?
"""

_outcomes = msgspec.msgpack.Decoder(list[Outcome])


def _run_row(row: tuple[Any, ...]) -> RunRow:
    counts = dict(zip(OUTCOMES, row[13:18]))
    return RunRow(
        run=row[0], kind=row[1], source=row[2], target=row[3],
        options=msgspec.json.decode(row[4]), status=row[5], started_at=row[6],
        sealed_at=row[7], finished_at=row[8], entries=row[9],
        summary=msgspec.json.decode(row[10]), attempts=row[11], counts=counts, error=row[12],
        matched=row[18], checkpoint=row[19] or 0,
    )


def runs(conn: Sql, option: tuple[str, Any] | None = None,
         statuses: Sequence[str] | None = None, limit: int | None = None) -> list[RunRow]:
    if option is None and statuses is None and limit is None:
        rows = conn.execute(_RUN_SELECT + " GROUP BY r.run ORDER BY r.started_seq DESC").fetchall()
        return [_run_row(row) for row in rows]
    # Pick the runs first, then total only their entries: "the latest run of job X" stays
    # cheap however many runs the journal holds.
    where, params = ["1 = 1"], list[Any]()
    if option is not None:
        clause, values = _option_clause(conn, *option)
        where.append(clause)
        params += values
    if statuses is not None:
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params += list(statuses)
    picked = f"SELECT run FROM runs WHERE {' AND '.join(where)} ORDER BY started_seq DESC LIMIT ?"
    sql = _RUN_SELECT + f" WHERE r.run IN ({picked}) GROUP BY r.run ORDER BY r.started_seq DESC"
    rows = conn.execute(sql, (*params, NO_LIMIT if limit is None else limit)).fetchall()
    return [_run_row(row) for row in rows]


def _option_clause(conn: Sql, name: str, value: Any) -> tuple[str, list[Any]]:
    """`options[name] = value`, the option's JSON type kept (1 is not "1")."""
    if dialect(conn) == "postgres":
        return "options::jsonb -> ? = ?::jsonb", [name, msgspec.json.encode(value).decode()]
    return "json_extract(options, ?) = ?", ['$."' + name.replace('"', '""') + '"', value]


def marks(conn: Sql) -> list[MarkRow]:
    rows = conn.execute('SELECT name, "column", value, key, run, at FROM marks ORDER BY name').fetchall()
    return [MarkRow(name, column, msgspec.json.decode(value), msgspec.json.decode(key), run, at)
            for name, column, value, key, run, at in rows]


def run(conn: Sql, run_id: str) -> RunRow | None:
    row = conn.execute(_RUN_SELECT + " WHERE r.run = ? GROUP BY r.run", (run_id,)).fetchone()
    return None if row is None else _run_row(row)


def runs_with_prefix(conn: Sql, prefix: str, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT run FROM runs WHERE substr(run, 1, ?) = ? ORDER BY run LIMIT ?",
        (len(prefix), prefix, limit),
    ).fetchall()
    return [row[0] for row in rows]


def entries_page(
    conn: Sql, run_id: str, after: int, states: list[str] | None, limit: int
) -> list[EntryRow]:
    sql = f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE run = ? AND entry > ?"
    params: list[Any] = [run_id, after]
    if states is not None:
        sql += f" AND state IN ({', '.join('?' * len(states))})"
        params += states
    rows = conn.execute(sql + " ORDER BY entry LIMIT ?", (*params, limit)).fetchall()
    return [EntryRow(*row) for row in rows]


def entry_event_seqs(conn: Sql, run_id: str, entry: int) -> tuple[int, int | None] | None:
    """(seq of the EntryPlanned, seq of the latest EntryApplied or None), None if unplanned."""
    row = conn.execute(
        "SELECT planned_seq, applied_seq FROM entries WHERE run = ? AND entry = ?", (run_id, entry)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def history(conn: Sql, key: str, entity: str | None) -> list[HistoryRow]:
    """Rows for every position of `key` in the candidate entries, by planned seq then position.

    The index knows entries by key hash only: each candidate's EntryPlanned is read for the
    key's positions (none: a hash collision) and the hash at each.
    """
    sql, params = HISTORY_SELECT, list[object]([khash(key)])
    if entity is not None:
        sql, params = sql + " AND e.entity = ?", [*params, entity]
    found = []
    for planned_seq, run_id, entry, entity_, op, planned_at, outcomes, applied_at, *where, status in (
        conn.execute(sql + " ORDER BY ri.entry_id", params).fetchall()
    ):
        planned = _keys_hashes(conn, planned_seq)
        positions = [pos for pos, k in enumerate(planned.keys) if k == key]
        if not positions:
            continue
        latest = None if outcomes is None else _outcomes.decode(outcomes)
        if len(planned.hashes) != len(planned.keys) or (latest is not None and len(latest) != len(planned.keys)):
            raise JournalIntegrityError(f"seq {planned_seq}: keys, hashes and outcomes do not line up")
        for pos in positions:
            # never applied: still to do, or never to be done when the run was cancelled
            outcome = latest[pos] if latest is not None else "cancelled" if status == "cancelled" else "pending"
            found.append(HistoryRow(run_id, entry, entity_, key, op, planned.hashes[pos], planned_at,
                                    outcome, applied_at, *where))
    return found


def _keys_hashes(conn: Sql, seq: int) -> KeysHashes:
    row = conn.execute("SELECT type, body FROM events WHERE seq = ?", (seq,)).fetchone()
    if row is None or row[0] != "EntryPlanned":
        raise JournalIntegrityError(f"seq {seq}: projections expect an EntryPlanned there")
    try:
        return keys_hashes_decoder.decode(row[1])
    except msgspec.DecodeError as exc:
        raise JournalIntegrityError(f"seq {seq}: EntryPlanned body does not decode: {exc}") from exc


def snapshot(conn: Sql, tables: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: conn.execute(f"SELECT * FROM {table} ORDER BY {', '.join(pk)}").fetchall()
        for table, pk in tables
    }
