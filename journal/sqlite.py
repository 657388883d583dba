"""The SQLite journal: one file, WAL, an append-only hash-chained `events` table and
projection tables kept in step with it inside the same transactions, except the record
index, which readers catch up lazily from the log (journal/index.py).

A new journal's file (and folder) is created by its first use, not when it is opened, so a
run that fails on bad input before its first append leaves no empty journal behind; whether
it could be created at all is checked when it is opened. SQLite errors are mapped here, at
the edge, to NotAJournal (a wrong path) or JournalStorageError (the machine refused).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from . import index, queries, rules, schema
from .chain import GENESIS, link
from .errors import JournalError, JournalIntegrityError, JournalStorageError, NotAJournal, UnknownEntry
from .events import AnyEvent, CheckpointSealed, EntryApplied, EntryPlanned, decode, encode, type_name
from .head import Head, HeadFile
from .projections import project, replay
from .resolve import resolve_run
from .rows import EntryRow, HistoryRow, MarkRow, Recorded, RunRow, VerifyReport
from .verify import Heads, verify_sqlite

if TYPE_CHECKING:
    from sqlite_utils import Database

# Rows per locked read: bounds memory (an entry's payload can be ~100 kB) and lets appends
# from other threads in between pages.
PAGE = 256
_INSERT_EVENT = "INSERT INTO events (seq, at, run, type, body, hash) VALUES (?, ?, ?, ?, ?, ?)"
_EVENT_COLUMNS = "seq, at, run, type, body, hash"
_E = TypeVar("_E", EntryPlanned, EntryApplied)
# How long a write waits for another process's transaction before the journal counts as
# locked (SQLite's busy timeout), in seconds; the variable overrides it (tests, or operators
# who would rather fail fast than wait).
BUSY_TIMEOUT = 30.0
BUSY_TIMEOUT_VAR = "SYNCD_JOURNAL_BUSY_TIMEOUT"
# The one line a storage failure gets, by SQLite's primary result code.
_REASONS = {
    sqlite3.SQLITE_FULL: "disk full",
    sqlite3.SQLITE_IOERR: "disk I/O error",
    sqlite3.SQLITE_READONLY: "read-only, cannot write",
    sqlite3.SQLITE_PERM: "permission denied",
    sqlite3.SQLITE_CANTOPEN: "cannot open the file",
}


def busy_timeout() -> float:
    text = os.environ.get(BUSY_TIMEOUT_VAR, "").strip()
    try:
        seconds = float(text) if text else BUSY_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):  # also refuses nan
        raise JournalError(f"{BUSY_TIMEOUT_VAR}={text!r} is not a number of seconds")
    return seconds


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def _storage_error(path: Path, exc: sqlite3.Error, timeout: float) -> JournalError:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # an extended code's primary code
    if code == sqlite3.SQLITE_NOTADB:
        return NotAJournal(f"journal {path}: not a journal (not an SQLite database)")
    if code == sqlite3.SQLITE_BUSY:  # after waiting the busy timeout
        return JournalStorageError(f"journal {path}: locked by another process (waited {timeout:g} s)")
    return JournalStorageError(f"journal {path}: {_REASONS.get(code, str(exc))}")


def _check_creatable(path: Path) -> None:
    """Refuse a journal that could never be created now, not at its first append (after the
    planning): the nearest folder that exists above it must take a new file."""
    folder = path.parent
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if folder.is_dir():
            import tempfile  # only for a journal not created yet

            tempfile.TemporaryFile(dir=folder).close()  # Linux: O_TMPFILE, never has a name
            return
    except OSError as exc:
        raise JournalStorageError(f"journal {path}: cannot create it in {folder} ({_reason(exc)})") from exc
    raise NotAJournal(f"journal {path}: {folder} is a file, not a folder")


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    """Open the file, creating it and its folder if needed."""
    if path.is_dir():  # SQLite would only say "unable to open database file"
        raise NotAJournal(f"journal {path} is a folder, not a journal")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # checked when opened, but the disk may have changed since
        raise JournalStorageError(f"journal {path}: cannot create its folder ({_reason(exc)})") from exc
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a batch is exactly one
    # transaction and reading the chain's tail cannot race another process's append.
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is fsynced before append returns; the applier's effects come after it.
        conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def _database(conn: sqlite3.Connection) -> Database:
    from sqlite_utils import Database  # only to create or rebuild tables: not on every open

    return Database(conn, recursive_triggers=False, execute_plugins=False)


@contextmanager
def _transaction(conn: sqlite3.Connection, durable: bool = True) -> Iterator[None]:
    """One IMMEDIATE transaction: all of it is committed (and fsynced) or none of it."""
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _rebuild(conn: sqlite3.Connection) -> None:
    db = _database(conn)
    schema.drop_projections(db)
    schema.create_projections(db)
    rows = conn.execute("SELECT seq, body FROM events ORDER BY seq")
    replay(conn, ((seq, _decode(seq, body)) for seq, body in rows))
    while not index.catch_up_chunk(conn):
        pass


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _decode(seq: int, body: bytes) -> AnyEvent:
    try:
        return decode(body)
    except msgspec.DecodeError as exc:
        raise JournalIntegrityError(f"seq {seq}: event body does not decode: {exc}") from exc


class SqliteJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._timeout = busy_timeout()
        self._conn: sqlite3.Connection | None = None
        self._head_file = HeadFile(path)
        if path.exists():
            with self._reading():  # now, so a locked or foreign file is refused here
                pass
        else:
            _check_creatable(path)  # created by its first use (module docstring)

    def _connection(self) -> sqlite3.Connection:
        """The open connection (opening and preparing the file the first time); called under
        self._lock."""
        if self._conn is None:
            conn = _connect(self.path, self._timeout)
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if schema.is_current(conn):  # the common case: a read, no write lock taken
            return
        db = _database(conn)
        with _transaction(conn):
            schema.create_event_log(db)
            self._check_version(conn)
            self._adopt_head_file(conn)
            if schema.projections_version(db) == schema.PROJECTIONS_VERSION:
                schema.create_projections(db)
            else:
                # Built by another layout (or never): derived data, so rebuilt from the log.
                _rebuild(conn)
                schema.set_projections_version(db)

    def _adopt_head_file(self, conn: sqlite3.Connection) -> None:
        """The first time this journal is opened by code that keeps a head file (a new
        journal, or one from before head files): write it from the tail, replacing any stale
        file of a deleted journal. From then on a missing head file is a problem for verify."""
        if _meta(conn, "head_file") is None:
            seq, previous = self._tail(conn)
            self._head_file.reset(Head(seq, previous.hex()))
            conn.execute("INSERT INTO meta (key, value) VALUES ('head_file', '1')")

    def _check_version(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row[0] != schema.SCHEMA_VERSION:
            raise NotAJournal(
                f"journal {self.path} has schema version {row[0]}; this code knows {schema.SCHEMA_VERSION}"
            )

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connection()
            except sqlite3.Error as exc:
                raise _storage_error(self.path, exc, self._timeout) from exc

    @contextmanager
    def _writing(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with self._reading() as conn, _transaction(conn, durable):
            yield conn

    # -- writing ----------------------------------------------------------------------

    def append(self, events: Sequence[AnyEvent], *, durable: bool = True) -> int:
        """Store the batch as one transaction (group commit); return the last seq.

        durable=True fsyncs before returning: what precedes an effect must use it.
        durable=False (WAL, synchronous=NORMAL) survives a killed process but not a power
        cut; it suits records of effects that are safe to redo, and the next durable
        append fsyncs it along with its own events.
        """
        if not events:
            return self.last_seq()
        with self._writing(durable) as conn:
            seq, previous = self._tail(conn)
            rows = []
            for event in events:
                rules.check(conn, event)
                body = encode(event)
                previous, seq = link(previous, body), seq + 1
                rows.append((seq, event.at, event.run, type_name(event), body, previous.hex()))
                project(conn, seq, event)
            conn.executemany(_INSERT_EVENT, rows)
        # After the commit: a head file ahead of the events would read as a truncation. Only
        # durable appends move it (each costs two fsyncs); the next one covers what came between.
        if durable:
            self._head_file.advance(Head(seq, previous.hex()))
        return seq

    def head(self) -> Head:
        with self._reading() as conn:
            seq, previous = self._tail(conn)
        return Head(seq, previous.hex())

    @staticmethod
    def _tail(conn: sqlite3.Connection) -> tuple[int, bytes]:
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS) if row is None else (row[0], bytes.fromhex(row[1]))

    def rebuild_projections(self) -> None:
        """Drop the projection tables and replay every event into fresh ones, the record
        index included (caught up to the end of the log)."""
        with self._writing() as conn:
            _rebuild(conn)

    def catch_up_index(self) -> None:
        """Index the entries planned since the last catch-up (a no-op read when none were).
        Readers call it first; syncd also calls it after each apply, so `audit` finds it done.

        One transaction per chunk of rows, each advancing the tracking row with the rows it
        adds, so appends from other threads get the lock in between. Not fsynced: the index
        is derived, and a lost chunk is simply indexed again by the next catch-up.
        """
        with self._reading() as conn:
            if not index.behind(conn):
                return
        done = False
        while not done:
            with self._writing(durable=False) as conn:
                done = index.catch_up_chunk(conn)


    # -- the log ------------------------------------------------------------------------

    def read(self, after: int = 0, run: str | None = None) -> Iterator[Recorded]:
        """Events with seq > after (of one run, if given) in seq order, a page at a time."""
        where = "seq > ?" + (" AND run = ?" if run is not None else "")
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} ORDER BY seq LIMIT {PAGE}"
        while True:
            with self._reading() as conn:
                page = conn.execute(sql, (after,) if run is None else (after, run)).fetchall()
            for seq, at, run_id, type_, body, hash_ in page:
                yield Recorded(seq, at, run_id, type_, _decode(seq, body), hash_)
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
        event = None if row is None else _decode(seq, row[0])
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

    def checkpoints(self, run_id: str) -> list[CheckpointSealed]:
        with self._reading() as conn:
            rows = conn.execute("SELECT seq, body FROM events WHERE run = ? AND type = ? ORDER BY seq",
                                (run_id, CheckpointSealed.__name__)).fetchall()
        return [event for seq, body in rows if isinstance(event := _decode(seq, body), CheckpointSealed)]

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

    # -- integrity ------------------------------------------------------------------------

    def verify(self, expect: Head | None = None) -> VerifyReport:
        # The index is compared up to the seq it tracks; an event it cannot index (a body
        # that no longer decodes) stops the catch-up there, and the walk reports it.
        try:
            self.catch_up_index()
        except JournalIntegrityError:
            pass
        with self._reading() as conn:
            adopted = _meta(conn, "head_file") is not None
        heads = Heads(self._head_file.read(), adopted, expect)
        # Runs on its own connection and snapshot: appends from other threads go on meanwhile.
        try:
            return verify_sqlite(self.path, heads)
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc, self._timeout) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:  # never used: nothing was opened (or created)
                self._conn.close()

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

