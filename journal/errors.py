"""The one exception tree of the journal.

JournalError
├── UnsupportedURL          the URL names no journal backend this package has
├── RejectedEvent           append refused: the batch breaks a run's lifecycle; nothing was stored
├── UnknownRun              no run has that id (or that prefix)
│   └── AmbiguousRun        a prefix matches several runs
├── UnknownEntry            the run has no planned entry with that number
├── JournalIntegrityError   stored events are inconsistent (a body that does not decode)
└── JournalStorageError     the storage backend failed (disk full, database locked too long)

Backend errors are mapped at the edge (`raise JournalStorageError(...) from exc`), so callers
never need to know which database sits underneath.
"""
from __future__ import annotations


class JournalError(Exception):
    """Root of every error the journal raises on purpose."""


class UnsupportedURL(JournalError):
    pass


class RejectedEvent(JournalError):
    pass


class UnknownRun(JournalError):
    pass


class AmbiguousRun(UnknownRun):
    pass


class UnknownEntry(JournalError):
    pass


class JournalIntegrityError(JournalError):
    pass


class JournalStorageError(JournalError):
    pass
