"""journal: an append-only, hash-chained event log of runs, with projections to query it.

Knows runs, entries and keyed records; nothing about what they mean to syncd.
"""
from __future__ import annotations

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
    MarkAdvanced,
    PlanSealed,
    RunFinished,
    RunStarted,
)
from .rows import EntryRow, HistoryRow, MarkRow, Recorded, RunRow, VerifyReport
from .sqlite import SqliteJournal
from .url import open_journal

__all__ = [
    "AmbiguousRun", "AnyEvent", "ApplyStarted", "EntryApplied", "EntryPlanned", "EntryRow",
    "Event", "HistoryRow", "JournalError", "JournalIntegrityError", "JournalStorageError",
    "MarkAdvanced", "MarkRow", "PlanSealed", "Recorded", "RejectedEvent", "RunFinished", "RunRow", "RunStarted",
    "SqliteJournal", "UnknownEntry", "UnknownRun", "UnsupportedURL", "VerifyReport",
    "open_journal",
]
