"""journal: an append-only, hash-chained event log of runs, with projections to query it.

Knows runs, entries and keyed records; nothing about what they mean to syncd.
"""
from __future__ import annotations

from .base import Journal
from .errors import (
    AmbiguousRun,
    JournalError,
    JournalIntegrityError,
    JournalStorageError,
    RejectedEvent,
    UnknownEntry,
    UnknownRun,
    UnsupportedURL,
)
from .events import (
    AnyEvent,
    ApplyStarted,
    EntryApplied,
    EntryPlanned,
    Event,
    ArchiveWritten,
    CheckpointSealed,
    MarkAdvanced,
    PlanSealed,
    RunCancelled,
    RunFinished,
    RunStarted,
)
from .head import Head, parse_head
from .rows import EntryRow, HistoryRow, MarkRow, Recorded, RunRow, VerifyReport
from .sqlite import SqliteJournal
from .states import (
    ACTIVE, DECISIONS, ENTRY_STATES, FINISH_STATUSES, OPS, OUTCOMES, RUN_STATUSES, TODO_STATES, UNFINISHED, EntryState,
    FinishStatus, Op, Outcome, RunStatus,
)
from .url import open_journal

__all__ = [
    "ACTIVE", "AmbiguousRun", "AnyEvent", "ApplyStarted", "EntryApplied", "EntryPlanned", "EntryRow",
    "DECISIONS", "ENTRY_STATES", "EntryState", "Event", "FINISH_STATUSES", "FinishStatus", "Head", "HistoryRow",
    "Journal", "OPS", "OUTCOMES", "Op", "Outcome", "RUN_STATUSES", "RunStatus", "TODO_STATES", "UNFINISHED", "JournalError", "JournalIntegrityError", "JournalStorageError",
    "ArchiveWritten", "CheckpointSealed", "MarkAdvanced", "MarkRow", "PlanSealed", "Recorded", "RejectedEvent", "RunCancelled", "RunFinished", "RunRow", "RunStarted",
    "SqliteJournal", "UnknownEntry", "UnknownRun", "UnsupportedURL", "VerifyReport",
    "open_journal", "parse_head",
]
