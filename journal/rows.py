"""Read-side values: what queries on the journal return."""
from __future__ import annotations

from typing import Any, Literal

import msgspec

from .events import AnyEvent
from .states import EntryState, Op, Outcome, RunStatus


class Recorded(msgspec.Struct, frozen=True):
    """One stored event with its place in the log."""

    seq: int
    at: str
    run: str
    type: str
    event: AnyEvent
    hash: str


class RunRow(msgspec.Struct, frozen=True):
    run: str
    kind: str
    source: str
    target: str
    options: dict[str, Any]
    status: RunStatus
    started_at: str
    sealed_at: str | None
    finished_at: str | None
    entries: int
    summary: dict[str, Any]
    attempts: int
    counts: dict[str, int]  # created/skipped/updated/failed over the entries' latest outcomes
    error: str | None = None  # RunFinished.error of the latest finish
    # Of counts["skipped"], the records of decision entries (states.DECISIONS): natural-key
    # matches (also among the plan's records already in the target) and clones' new keys,
    # which write nothing.
    matched: int = 0
    # Entries 1..checkpoint are sealed (a CheckpointSealed, or the PlanSealed): an applier may
    # apply them while the rest is planned (architecture §7).
    checkpoint: int = 0


class MarkRow(msgspec.Struct, frozen=True):
    """A named high-water mark: the last (value, key) a completed run selected in column order."""

    name: str
    column: str
    value: Any
    key: Any
    run: str
    at: str


class EntryRow(msgspec.Struct, frozen=True):
    run: str
    entry: int
    entity: str
    op: Op
    records: int
    state: EntryState
    error: str | None
    created: int
    skipped: int
    updated: int
    failed: int
    deleted: int
    retries: int
    planned_at: str
    applied_at: str | None
    worker: str | None = None  # the `syncd worker` that recorded the latest outcome


class HistoryRow(msgspec.Struct, frozen=True):
    run: str
    entry: int
    entity: str
    key: str
    op: Op
    hash: str
    planned_at: str
    outcome: Outcome | Literal["pending", "cancelled"]
    applied_at: str | None
    kind: str
    source: str
    target: str


class VerifyReport(msgspec.Struct, frozen=True):
    ok: bool
    events: int
    problems: list[str]
