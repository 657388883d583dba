"""Journal events: a msgspec tagged union, encoded canonically as msgpack.

The journal knows runs, entries and keyed items, nothing about what they mean to syncd.
An entry is one operation (`op`) on a batch of items of one `entity`; its payload holds
the exact rows it will write, so applying it never needs the source again.
"""
from __future__ import annotations

from typing import Any

import msgspec

from .states import EntryState, FinishStatus, Op, Outcome


class Event(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    run: str
    at: str  # ISO-8601 UTC, microseconds, e.g. 2026-11-22T10:15:30.123456Z


class RunStarted(Event, frozen=True):
    kind: str  # copy | transfer | ...
    source: str
    target: str
    options: dict[str, Any] = {}  # filters, limit, flags: never secrets


class EntryPlanned(Event, frozen=True):
    entry: int  # 1-based position in the run's plan; applied in this order
    entity: str  # entity name; for op "copy" a label only ("files"): ops tell entries apart
    op: Op
    columns: list[str]  # names of the row fields in payload order
    keys: list[str]  # one key per row (str of the primary key; source URI for files)
    hashes: list[str]  # content hash per row (blake2b-128 hex of the row's msgpack)
    payload: bytes  # zlib(msgpack(list of rows)), each row a list in `columns` order


class PlanSealed(Event, frozen=True):
    entries: int  # number of EntryPlanned events in this run
    summary: dict[str, Any] = {}  # the plan table, as in `--json` "plan"


class CheckpointSealed(Event, frozen=True):
    """The plan so far, made durable with its entries (architecture §7): entries 1..`entries`
    may be applied while planning goes on, and a planner cut off after this resumes from
    `cursor` (the planner's position, opaque here). `known` and `remaps` are what the planner
    decided since the previous checkpoint (parent keys it will not plan again; natural-key
    matches source key → target key, per entity); `summary` is the plan table so far."""

    entries: int
    cursor: Any
    summary: dict[str, Any] = {}
    known: dict[str, list[Any]] = {}
    remaps: dict[str, list[list[Any]]] = {}


class ApplyStarted(Event, frozen=True):
    attempt: int  # 1 for the first apply, 2.. for resumes


class EntryApplied(Event, frozen=True):
    entry: int
    state: EntryState  # done | failed
    outcomes: list[Outcome]  # parallel to the entry's keys
    error: str | None = None
    retries: int = 0
    worker: str | None = None  # which `syncd worker` applied it (None: the run's own applier)


class RunFinished(Event, frozen=True):
    status: FinishStatus
    error: str | None = None


class RunCancelled(Event, frozen=True):
    """The run is abandoned: nothing more of it is planned or applied (what was applied
    stays, and stays in the journal). A person's decision, with their reason."""

    reason: str


class MarkAdvanced(Event, frozen=True):
    """A named high-water mark moved to what the completed `run` selected last.

    `name` is the owner's (a daemon job); `value` and `key` are the last selected item's
    position in (column, key) order, so the next selection starts strictly after it.
    """

    name: str
    column: str
    value: Any
    key: Any


class ArchiveWritten(Event, frozen=True):
    """A completed export (or backup) run's archive is written and verified: where, and the
    sha256 of the whole file, so `audit` can say which archive a record went into."""

    path: str
    sha256: str
    size: int


AnyEvent = (RunStarted | EntryPlanned | CheckpointSealed | PlanSealed | ApplyStarted | EntryApplied | RunFinished
            | RunCancelled | MarkAdvanced | ArchiveWritten)

_encoder = msgspec.msgpack.Encoder(order="sorted")
_decoder: msgspec.msgpack.Decoder[AnyEvent] = msgspec.msgpack.Decoder(AnyEvent)


def encode(event: AnyEvent) -> bytes:
    """Canonical bytes: sorted keys, so the same event always hashes the same."""
    return _encoder.encode(event)


def decode(body: bytes) -> AnyEvent:
    return _decoder.decode(body)


def type_name(event: AnyEvent) -> str:
    return type(event).__name__
