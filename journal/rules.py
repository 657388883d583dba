"""What append refuses: events that do not fit their run's lifecycle.

Checked against the projections inside the append transaction, event by event, so a batch
may start a run and plan it at once. One refused event refuses the whole batch.
"""
from __future__ import annotations

from .errors import RejectedEvent
from .sql import Sql
from .events import (
    AnyEvent, ApplyStarted, ArchiveWritten, CheckpointSealed, EntryApplied, EntryPlanned, MarkAdvanced, PlanSealed, RunCancelled, RunStarted,
    type_name,
)


def check(conn: Sql, event: AnyEvent) -> None:
    run = conn.execute("SELECT sealed_at, entries, status, checkpoint FROM runs WHERE run = ?",
                       (event.run,)).fetchone()
    if isinstance(event, RunStarted):
        if run is not None and (run[0] is not None or run[3]):
            raise RejectedEvent(f"run {event.run!r} is already {'sealed' if run[0] else 'checkpointed'};"
                                " it cannot be started again")
        return
    if run is None:
        raise RejectedEvent(f"{type_name(event)} for unknown run {event.run!r} (no RunStarted)")
    sealed, planned, checkpoint = run[0] is not None, run[1], run[3] or 0
    if run[2] == "cancelled" and not isinstance(event, MarkAdvanced):
        raise RejectedEvent(f"run {event.run!r} was cancelled; nothing more of it is planned or applied")
    if isinstance(event, RunCancelled) and run[2] == "completed":
        raise RejectedEvent(f"run {event.run!r} is completed; there is nothing left to cancel")
    if isinstance(event, EntryPlanned):
        _check_planned(conn, event, sealed)
    elif isinstance(event, (PlanSealed, CheckpointSealed)):
        _check_sealed(event, sealed, planned)
    elif isinstance(event, ApplyStarted) and not (sealed or checkpoint):
        raise RejectedEvent(f"run {event.run!r} is not sealed; an unsealed plan is never applied")
    elif isinstance(event, EntryApplied):
        if not sealed and event.entry > checkpoint:
            raise RejectedEvent(f"run {event.run!r} entry {event.entry} is not sealed by a checkpoint yet;"
                                " an unsealed entry is never applied")
        _check_applied(conn, event)
    elif isinstance(event, MarkAdvanced):
        _check_mark(conn, event)
    elif isinstance(event, ArchiveWritten) and run[2] != "completed":
        raise RejectedEvent(f"run {event.run!r} is {run[2]}: only a completed export wrote an archive")


def _check_planned(conn: Sql, event: EntryPlanned, sealed: bool) -> None:
    where = f"run {event.run!r} entry {event.entry}"
    if sealed:
        raise RejectedEvent(f"{where}: the plan is sealed; no entry can be added")
    if len(event.keys) != len(event.hashes):
        raise RejectedEvent(f"{where}: {len(event.keys)} keys but {len(event.hashes)} hashes")
    exists = conn.execute(
        "SELECT 1 FROM entries WHERE run = ? AND entry = ?", (event.run, event.entry)
    ).fetchone()
    if exists:
        raise RejectedEvent(f"{where} is already planned")


def _check_sealed(event: PlanSealed | CheckpointSealed, sealed: bool, planned: int) -> None:
    if sealed:
        raise RejectedEvent(f"run {event.run!r} is already sealed")
    if event.entries != planned:
        raise RejectedEvent(
            f"run {event.run!r}: {type_name(event)} says {event.entries} entries but {planned} were planned"
        )


def _check_applied(conn: Sql, event: EntryApplied) -> None:
    where = f"run {event.run!r} entry {event.entry}"
    row = conn.execute(
        "SELECT records FROM entries WHERE run = ? AND entry = ?", (event.run, event.entry)
    ).fetchone()
    if row is None:
        raise RejectedEvent(f"{where} was never planned")
    if len(event.outcomes) != row[0]:
        raise RejectedEvent(f"{where}: {len(event.outcomes)} outcomes for {row[0]} records")


def _check_mark(conn: Sql, event: MarkAdvanced) -> None:
    # A mark says "everything up to here is in the target": only a completed run can say so.
    status = conn.execute("SELECT status FROM runs WHERE run = ?", (event.run,)).fetchone()[0]
    if status != "completed":
        raise RejectedEvent(
            f"mark {event.name!r} cannot advance with run {event.run!r}: the run is {status}, not completed"
        )
