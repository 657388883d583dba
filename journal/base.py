"""The Journal protocol: what every journal backend offers, and all that callers may name.

Tiers, as eventsourcing draws them: append and read (the log itself, one total order, hash
chained); runs and entries (projections kept in the same transaction as each append); the
record index (which entries touched a key, caught up behind the log); integrity (verify,
rebuild). `SqliteJournal` implements it today; a `PostgresJournal` (issue 15) must pass the same
contract suite (tests/journal/contract.py) and can then be opened by URL in its place.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from .events import AnyEvent, CheckpointSealed, EntryApplied, EntryPlanned
from .head import Head
from .rows import EntryRow, HistoryRow, MarkRow, Recorded, RunRow, VerifyReport
from .states import EntryState, RunStatus


class Journal(Protocol):
    # Where the journal lives on this machine; syncd keeps its lock files beside it.
    path: Path

    # -- append and read ------------------------------------------------------------------
    def append(self, events: Sequence[AnyEvent], *, durable: bool = True) -> int:
        """Append in one transaction, projections included; the last seq. `durable=False`
        may skip the fsync (only for events that are safe to lose and redo)."""

    def read(self, after: int = 0, run: str | None = None) -> Iterator[Recorded]:
        """Events in seq order after `after`, optionally of one run."""

    def last_seq(self) -> int: ...

    def head(self) -> Head:
        """The last event's seq and chain hash (seq 0 and the genesis hash when empty)."""

    # -- runs and entries -----------------------------------------------------------------
    def resolve_run(self, text: str) -> str:
        """The run id that `text` names (a whole id or a unique prefix)."""

    def runs(self, *, option: tuple[str, Any] | None = None,
             statuses: Iterable[RunStatus] | None = None, limit: int | None = None) -> list[RunRow]:
        """Runs, newest first, filtered by a RunStarted option and/or status."""

    def run(self, run_id: str) -> RunRow | None: ...

    def marks(self) -> dict[str, MarkRow]: ...

    def entries(self, run_id: str, states: Iterable[EntryState] | None = None) -> Iterator[EntryRow]:
        """The run's entries by number; the caller may append while iterating."""

    def planned(self, run_id: str, entry: int) -> EntryPlanned: ...

    def applied(self, run_id: str, entry: int) -> EntryApplied | None:
        """The entry's latest outcome, None while pending."""

    def workers(self, run_id: str) -> dict[str, int]:
        """Which `syncd worker` recorded the latest outcome of how many of the run's entries
        (empty for a run its own applier applied)."""

    def checkpoints(self, run_id: str) -> list[CheckpointSealed]:
        """The run's sealed checkpoints, oldest first (what a cut-off planner resumes from)."""

    # -- record index -----------------------------------------------------------------------
    def history(self, key: str, entity: str | None = None) -> list[HistoryRow]:
        """Every planned operation on the record `key`, oldest first."""

    def catch_up_index(self) -> None:
        """Bring the record index up to the end of the log. `history` does it first anyway;
        calling it after writing keeps that work off the reader's path."""

    # -- integrity --------------------------------------------------------------------------
    def verify(self, expect: Head | None = None) -> VerifyReport:
        """Walk the chain, compare the projections with a rebuild, and check that the
        events still reach the head kept outside them (and `expect`, when given)."""

    def rebuild_projections(self) -> None: ...

    def projection_snapshot(self) -> dict[str, list[tuple[Any, ...]]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Journal: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
