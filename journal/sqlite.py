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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from . import index, schema
from .common import INSERT_EVENT, SqlJournal, decode_body, stage, tail
from .errors import JournalError, JournalIntegrityError, JournalStorageError, NotAJournal
from .events import AnyEvent
from .head import Head, HeadFile
from .projections import replay
from .rows import VerifyReport
from .verify import Heads, verify_sqlite

if TYPE_CHECKING:
    from sqlite_utils import Database

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
    replay(conn, ((seq, decode_body(seq, body)) for seq, body in rows))
    while not index.catch_up_chunk(conn):
        pass


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


class SqliteJournal(SqlJournal):
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
            seq, previous = tail(conn)
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
            head, rows = stage(conn, events)
            conn.executemany(INSERT_EVENT, rows)
        # After the commit: a head file ahead of the events would read as a truncation. Only
        # durable appends move it (each costs two fsyncs); the next one covers what came between.
        if durable:
            self._head_file.advance(head)
        return head.seq

    def rebuild_projections(self) -> None:
        """Drop the projection tables and replay every event into fresh ones, the record
        index included (caught up to the end of the log)."""
        with self._writing() as conn:
            _rebuild(conn)

    def _index_behind(self, conn: sqlite3.Connection) -> bool:  # type: ignore[override]
        return index.behind(conn)

    def _index_chunk(self, conn: sqlite3.Connection) -> bool:  # type: ignore[override]
        return index.catch_up_chunk(conn)

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

