"""What the SQLite and Postgres journals share: one append step and every read, written once
over the journal's shared SQL (journal/sql.py). A backend supplies the connection handling
(`_reading`, `_writing`), the head kept outside the events, and verify."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec

from . import queries, rules, schema
from .chain import GENESIS, link
from .errors import JournalIntegrityError, UnknownEntry
from .events import AnyEvent, CheckpointSealed, EntryApplied, EntryPlanned, decode, encode, type_name
from .head import Head
from .projections import project
from .resolve import resolve_run
from .rows import EntryRow, HistoryRow, MarkRow, Recorded, RunRow
from .sql import Sql

# Rows per locked read: bounds memory (an entry's payload can be ~100 kB) and lets appends
# from other threads in between pages.
PAGE = 256
INSERT_EVENT = "INSERT INTO events (seq, at, run, type, body, hash) VALUES (?, ?, ?, ?, ?, ?)"
_EVENT_COLUMNS = "seq, at, run, type, body, hash"
_E = TypeVar("_E", EntryPlanned, EntryApplied)


def decode_body(seq: int, body: bytes) -> AnyEvent:
    try:
        return decode(body)
    except msgspec.DecodeError as exc:
        raise JournalIntegrityError(f"seq {seq}: event body does not decode: {exc}") from exc


def tail(conn: Sql) -> tuple[int, bytes]:
    row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS) if row is None else (row[0], bytes.fromhex(row[1]))


def stage(conn: Sql, events: Sequence[AnyEvent]) -> tuple[Head, list[tuple[Any, ...]]]:
    """Check each event against its run, chain it and update the projections, inside the
    caller's write transaction (which must exclude other appenders); the event rows to
    insert and the head they make."""
    seq, previous = tail(conn)
    rows = []
    for event in events:
        rules.check(conn, event)
        body = encode(event)
        previous, seq = link(previous, body), seq + 1
        rows.append((seq, event.at, event.run, type_name(event), body, previous.hex()))
        project(conn, seq, event)
    return Head(seq, previous.hex()), rows


class SqlJournal(ABC):
    """The reads of the Journal protocol (journal/base.py), the record index's catch-up and
    the context manager; a backend supplies its connections and its index steps."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Sql]:
        """The connection, under the journal's lock, backend errors mapped."""

    @abstractmethod
    def _writing(self, durable: bool = True) -> AbstractContextManager[Sql]:
        """A write transaction that excludes every other appender."""

    @abstractmethod
    def _index_behind(self, conn: Sql) -> bool:
        """Whether events were appended since the record index last caught up (read-only)."""

    @abstractmethod
    def _index_chunk(self, conn: Sql) -> bool:
        """Index one chunk inside a write transaction; True once the index covers the log."""

    @abstractmethod
    def close(self) -> None: ...

    def catch_up_index(self) -> None:
        """Index the entries planned since the last catch-up (a no-op read when none were).
        Readers call it first; syncd also calls it after each apply, so `audit` finds it done.

        One transaction per chunk of rows, each advancing the tracking row with the rows it
        adds, so appends from other threads and processes get the lock in between. Not made
        durable: the index is derived, and a lost chunk is simply indexed again by the next
        catch-up."""
        with self._reading() as conn:
            if not self._index_behind(conn):
                return
        done = False
        while not done:
            with self._writing(durable=False) as conn:
                done = self._index_chunk(conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def head(self) -> Head:
        with self._reading() as conn:
            seq, previous = tail(conn)
        return Head(seq, previous.hex())

    # -- the log ------------------------------------------------------------------------

    def read(self, after: int = 0, run: str | None = None) -> Iterator[Recorded]:
        """Events with seq > after (of one run, if given) in seq order, a page at a time."""
        where = "seq > ?" + (" AND run = ?" if run is not None else "")
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} ORDER BY seq LIMIT {PAGE}"
        while True:
            with self._reading() as conn:
                page = conn.execute(sql, (after,) if run is None else (after, run)).fetchall()
            for seq, at, run_id, type_, body, hash_ in page:
                yield Recorded(seq, at, run_id, type_, decode_body(seq, body), hash_)
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def last_seq(self) -> int:
        with self._reading() as conn:
            last: int = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        return last

    def _event_at(self, seq: int, kind: type[_E]) -> _E:
        """The event a projection row points at; anything else means the file was tampered with."""
        with self._reading() as conn:
            row = conn.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
        event = None if row is None else decode_body(seq, row[0])
        if not isinstance(event, kind):
            raise JournalIntegrityError(f"seq {seq}: projections expect a {kind.__name__} there")
        return event

    # -- projections --------------------------------------------------------------------

    def resolve_run(self, text: str) -> str:
        with self._reading() as conn:
            return resolve_run(text, lambda prefix, n: queries.runs_with_prefix(conn, prefix, n))

    def runs(self, *, option: tuple[str, Any] | None = None, statuses: Iterable[str] | None = None,
             limit: int | None = None) -> list[RunRow]:
        """Runs, newest first: every one, or those whose RunStarted options hold
        `option` = (name, value), whose status is one of `statuses`, at most `limit`."""
        wanted = None if statuses is None else list(statuses)
        with self._reading() as conn:
            return queries.runs(conn, option, wanted, limit)

    def marks(self) -> dict[str, MarkRow]:
        """The latest MarkAdvanced of every name."""
        with self._reading() as conn:
            return {mark.name: mark for mark in queries.marks(conn)}

    def run(self, run_id: str) -> RunRow | None:
        with self._reading() as conn:
            return queries.run(conn, run_id)

    def entries(self, run_id: str, states: Iterable[str] | None = None) -> Iterator[EntryRow]:
        """The run's entries by entry number; no lock is held between pages, so the caller
        may append outcomes while iterating (the applier does)."""
        wanted = None if states is None else list(states)
        after = 0
        while True:
            with self._reading() as conn:
                page = queries.entries_page(conn, run_id, after, wanted, PAGE)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].entry

    def _entry_seqs(self, run_id: str, entry: int) -> tuple[int, int | None]:
        with self._reading() as conn:
            seqs = queries.entry_event_seqs(conn, run_id, entry)
        if seqs is None:
            raise UnknownEntry(f"run {run_id!r} has no planned entry {entry}")
        return seqs

    def planned(self, run_id: str, entry: int) -> EntryPlanned:
        return self._event_at(self._entry_seqs(run_id, entry)[0], EntryPlanned)

    def applied(self, run_id: str, entry: int) -> EntryApplied | None:
        """The entry's latest outcome, or None while it is pending."""
        seq = self._entry_seqs(run_id, entry)[1]
        return None if seq is None else self._event_at(seq, EntryApplied)

    def workers(self, run_id: str) -> dict[str, int]:
        with self._reading() as conn:
            rows = conn.execute("SELECT worker, COUNT(*) FROM entries WHERE run = ? AND worker IS NOT NULL"
                                " GROUP BY worker ORDER BY worker", (run_id,)).fetchall()
        return {worker: int(count) for worker, count in rows}

    def checkpoints(self, run_id: str) -> list[CheckpointSealed]:
        with self._reading() as conn:
            rows = conn.execute("SELECT seq, body FROM events WHERE run = ? AND type = ? ORDER BY seq",
                                (run_id, CheckpointSealed.__name__)).fetchall()
        return [event for seq, body in rows if isinstance(event := decode_body(seq, body), CheckpointSealed)]

    def history(self, key: str, entity: str | None = None) -> list[HistoryRow]:
        """Every planned operation on the record `key`, oldest first."""
        self.catch_up_index()
        with self._reading() as conn:
            return queries.history(conn, key, entity)

    def projection_snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every projection table's rows, the record index caught up first."""
        self.catch_up_index()
        with self._reading() as conn:
            return queries.snapshot(conn, schema.PROJECTIONS.items())

