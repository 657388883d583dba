"""The one exception tree of syncd.

SyncdError
├── InputError            bad input or config; the CLI prints one line and exits 2, nothing written
│   ├── ConfigError       syncd.toml unreadable, malformed, unknown key, bad value
│   ├── SchemaError       unknown entity or field, unsupported table shape, reference cycle
│   ├── FilterError       malformed filter, unknown op, value of the wrong type
│   ├── ArchiveError      an archive that is not one, broken or hostile (syncd/archive/)
│   └── ConflictError     an import found records that differ from the target's (exit 1)
├── StoreError            a record or blob store failed while working
│   ├── TransientError    worth retrying (locked database, connection reset, timeout)
│   ├── PermanentError    retrying will not help (constraint violated, trigger refused)
│   └── StoreUnavailable  the store stayed locked or unreachable past its wait: exit 74
├── RunStateError         the journal says this run cannot do what was asked (resume a completed run)
└── Interrupted           SIGINT/SIGTERM arrived; the run stopped at an entry boundary

Adapters map backend errors at their edge (`raise TransientError(...) from exc`).
"""
from __future__ import annotations


class SyncdError(Exception):
    """Root of every error syncd raises on purpose."""


class InputError(SyncdError):
    """Bad input: exit 2 before anything is written."""


class ConfigError(InputError):
    pass


class SchemaError(InputError):
    pass


class FilterError(InputError):
    pass


class ArchiveError(InputError):
    """The file is not a syncd archive, is damaged, or is hostile (path traversal, a member
    whose size or sha256 is not the manifest's, a zip bomb): nothing is read further."""


class ConflictError(InputError):
    """`import --on-conflict error` found target records with other content: they are listed,
    nothing is written, and the CLI exits 1 (the input is fine; the environments disagree)."""

    def __init__(self, message: str, conflicts: list[str]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class StoreError(SyncdError):
    pass


class TransientError(StoreError):
    pass


class PermanentError(StoreError):
    pass


class StoreUnavailable(StoreError):
    """Nothing can be done with this store now (locked by another process past the wait):
    the CLI exits with the storage code, 74, before anything is planned."""


class RunStateError(SyncdError):
    pass


class Interrupted(SyncdError):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
