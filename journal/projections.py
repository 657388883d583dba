"""How each event updates the projection tables.

Handlers are pure functions of (tables, seq, event): replaying the same events into empty
tables always yields the same rows, which is what rebuild and verify rely on. They never
decode an entry's payload: the rows themselves are only needed to apply, not to query.
The record index is not kept here but caught up lazily by readers (journal/index.py).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from .events import (
    AnyEvent, ApplyStarted, ArchiveWritten, CheckpointSealed, EntryApplied, EntryPlanned, MarkAdvanced, PlanSealed, RunCancelled, RunFinished,
    RunStarted,
)
from .sql import Sql
from .states import OUTCOMES

# Sorted keys, so that the same options always give the same stored text.
_json = msgspec.json.Encoder(order="sorted")
to_json_value = _json.encode
_msgpack = msgspec.msgpack.Encoder()


def to_json(value: dict[str, Any]) -> str:
    return _json.encode(value).decode()


def _run_started(conn: Sql, seq: int, ev: RunStarted) -> None:
    # Starting a run again means its planning was cut off: forget the partial plan. Its
    # record_index rows may stay: they point at EntryPlanned seqs no entries row has now.
    conn.execute("DELETE FROM entries WHERE run = ?", (ev.run,))
    conn.execute(
        "INSERT INTO runs (run, kind, source, target, options, status, started_at,"
        " sealed_at, finished_at, entries, summary, attempts, error, started_seq, checkpoint, apply_seq)"
        " VALUES (?, ?, ?, ?, ?, 'planning', ?, NULL, NULL, 0, '{}', 0, NULL, ?, 0, 0)"
        " ON CONFLICT (run) DO UPDATE SET kind = excluded.kind, source = excluded.source,"
        " target = excluded.target, options = excluded.options, status = excluded.status,"
        " started_at = excluded.started_at, sealed_at = NULL, finished_at = NULL, entries = 0,"
        " summary = '{}', attempts = 0, error = NULL, started_seq = excluded.started_seq,"
        " checkpoint = 0, apply_seq = 0",
        (ev.run, ev.kind, ev.source, ev.target, to_json(ev.options), ev.at, seq),
    )


def _entry_planned(conn: Sql, seq: int, ev: EntryPlanned) -> None:
    conn.execute(
        "INSERT INTO entries (run, entry, entity, op, records, state, error, created, skipped,"
        " updated, failed, deleted, retries, planned_at, applied_at, planned_seq, applied_seq,"
        " outcomes, worker)"
        " VALUES (?, ?, ?, ?, ?, 'pending', NULL, 0, 0, 0, 0, 0, 0, ?, NULL, ?, NULL, NULL, NULL)",
        (ev.run, ev.entry, ev.entity, ev.op, len(ev.keys), ev.at, seq),
    )
    conn.execute("UPDATE runs SET entries = entries + 1 WHERE run = ?", (ev.run,))
    # The hot path of planning: the record index is not touched here; readers catch it up
    # lazily from the log (journal/index.py).


def _checkpoint_sealed(conn: Sql, seq: int, ev: CheckpointSealed) -> None:
    conn.execute("UPDATE runs SET checkpoint = ?, summary = ? WHERE run = ?",
                 (ev.entries, to_json(ev.summary), ev.run))


def _plan_sealed(conn: Sql, seq: int, ev: PlanSealed) -> None:
    # An applier following the checkpoints may have started already: the run stays applying.
    conn.execute(
        "UPDATE runs SET status = CASE status WHEN 'applying' THEN 'applying' ELSE 'planned' END,"
        " sealed_at = ?, summary = ?, checkpoint = ? WHERE run = ?",
        (ev.at, to_json(ev.summary), ev.entries, ev.run),
    )


def _apply_started(conn: Sql, seq: int, ev: ApplyStarted) -> None:
    # A resume reopens a finished (failed/interrupted) run: its old finish no longer holds.
    conn.execute(
        "UPDATE runs SET status = 'applying', attempts = attempts + 1, finished_at = NULL,"
        " error = NULL, apply_seq = ? WHERE run = ?",
        (seq, ev.run),
    )


def _entry_applied(conn: Sql, seq: int, ev: EntryApplied) -> None:
    # A later outcome (a resume retried the entry) replaces the earlier one wholesale.
    counts = Counter(ev.outcomes)
    conn.execute(
        "UPDATE entries SET state = ?, error = ?, created = ?, skipped = ?, updated = ?,"
        " failed = ?, deleted = ?, retries = ?, applied_at = ?, applied_seq = ?, outcomes = ?,"
        " worker = ? WHERE run = ? AND entry = ?",
        (ev.state, ev.error, *(counts[o] for o in OUTCOMES), ev.retries, ev.at, seq,
         _msgpack.encode(ev.outcomes), ev.worker, ev.run, ev.entry),
    )


def _run_finished(conn: Sql, seq: int, ev: RunFinished) -> None:
    conn.execute(
        "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE run = ?",
        (ev.status, ev.at, ev.error, ev.run),
    )


def _run_cancelled(conn: Sql, seq: int, ev: RunCancelled) -> None:
    conn.execute(
        "UPDATE runs SET status = 'cancelled', finished_at = ?, error = ? WHERE run = ?",
        (ev.at, ev.reason, ev.run),
    )


def _mark_advanced(conn: Sql, seq: int, ev: MarkAdvanced) -> None:
    # JSON keeps the value's type (a number stays a number) through a TEXT column.
    conn.execute(
        'INSERT INTO marks (name, "column", value, key, run, at, seq) VALUES (?, ?, ?, ?, ?, ?, ?)'
        ' ON CONFLICT (name) DO UPDATE SET "column" = excluded."column", value = excluded.value,'
        " key = excluded.key, run = excluded.run, at = excluded.at, seq = excluded.seq",
        (ev.name, ev.column, to_json_value(ev.value).decode(), to_json_value(ev.key).decode(),
         ev.run, ev.at, seq),
    )


def _archive_written(conn: Sql, seq: int, ev: ArchiveWritten) -> None:
    # The run's summary says which file it wrote: `runs --json`, `show` and `audit` read it.
    row = conn.execute("SELECT summary FROM runs WHERE run = ?", (ev.run,)).fetchone()
    summary = msgspec.json.decode(row[0])
    summary["archive"] = {"path": ev.path, "sha256": ev.sha256, "size": ev.size, "at": ev.at}
    conn.execute("UPDATE runs SET summary = ? WHERE run = ?", (to_json(summary), ev.run))


_HANDLERS: dict[type, Callable[[Sql, int, Any], None]] = {
    RunStarted: _run_started,
    EntryPlanned: _entry_planned,
    CheckpointSealed: _checkpoint_sealed,
    PlanSealed: _plan_sealed,
    ApplyStarted: _apply_started,
    EntryApplied: _entry_applied,
    RunFinished: _run_finished,
    RunCancelled: _run_cancelled,
    MarkAdvanced: _mark_advanced,
    ArchiveWritten: _archive_written,
}


def project(conn: Sql, seq: int, event: AnyEvent) -> None:
    """Update the projection tables for one event, inside the caller's transaction."""
    _HANDLERS[type(event)](conn, seq, event)


def replay(conn: Sql, events: Iterable[tuple[int, AnyEvent]]) -> None:
    for seq, event in events:
        project(conn, seq, event)
