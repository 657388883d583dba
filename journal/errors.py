"""The one exception tree of the journal.

JournalError
├── UnsupportedURL          the URL names no journal backend this package has
├── RejectedEvent           append refused: the batch breaks a run's lifecycle; nothing was stored
├── UnknownRun              no run has that id (or that prefix)
│   └── AmbiguousRun        a prefix matches several runs
├── UnknownEntry            the run has no planned entry with that number
├── JournalIntegrityError   stored events are inconsistent (a body that does not decode)
├── NotAJournal             the path cannot be this journal: a regular file on the way to it, a
│                           folder, a file that is not SQLite or of another schema version
└── JournalStorageError     the storage failed: the file or its folder cannot be created (permission
                            denied, read-only, no such folder), disk full, I/O error, locked by
                            another process past the busy timeout

NotAJournal is a wrong path (fix the URL); JournalStorageError is the machine refusing a right
one (fix the disk, the permissions, or wait), so callers can tell the two apart (syncd exits 2
and 74).

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


class NotAJournal(JournalError):
    pass


class JournalStorageError(JournalError):
    pass
