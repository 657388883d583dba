"""PostgresJournal: the journal contract (journal/base.py) on a PostgreSQL database, shared by
every process that opens the same URL, on any machine.

- One total order: every append takes one transaction-level advisory lock (`APPEND_LOCK`,
  scoped to the journal's schema), reads the tail, checks, chains, projects and inserts,
  then commits; the next appender sees that commit (READ COMMITTED). Readers never wait.
- Durable: a commit is on disk when append returns (synchronous_commit); `durable=False`
  sets it off for that transaction only (WAL order still keeps it before later commits).
- The head kept outside the events (the SQLite journal's sidecar file) is the `head` row,
  moved in the same transaction as the events it names.

psycopg's errors are mapped here: a lost or refused connection is a JournalStorageError
naming the database, never the password.
"""
from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from .. import schema as shared_schema
from ..common import INSERT_EVENT, SqlJournal, decode_body, stage, tail
from ..errors import JournalError, JournalIntegrityError, JournalStorageError, NotAJournal
from ..events import AnyEvent, ApplyStarted, CheckpointSealed, EntryApplied, PlanSealed
from ..head import Head
from ..projections import replay
from ..rows import VerifyReport
from ..url import PG_SCHEMA
from ..verify import Heads
from . import index, schema
from .connection import PgSql
from .leases import Leases
from .locks import AdvisoryLock
from .verify import verify

CONNECT_TIMEOUT = 10
# Events after which entries may have become claimable: waiting workers are woken (LISTEN).
WAKING = (CheckpointSealed, PlanSealed, ApplyStarted, EntryApplied)


def lock_key(schema_name: str, name: str) -> int:
    """A signed 64-bit advisory lock key for `name` within this journal's schema."""
    return int.from_bytes(zlib.crc32(schema_name.encode()).to_bytes(4, "big")
                          + zlib.crc32(name.encode()).to_bytes(4, "big"), "big", signed=True)


class PostgresJournal(SqlJournal):
    def __init__(self, connect: dict[str, Any], schema_name: str, where: str, home: Path) -> None:
        """`connect`: psycopg.connect's keyword arguments (no search_path: set here);
        `where`: how messages name it (no secret); `home`: a local folder for what stays on
        this machine (syncd keeps scratch files there)."""
        if not PG_SCHEMA.fullmatch(schema_name):
            raise NotAJournal(f"journal {where}: schema {schema_name!r} is not a plain lower-case "
                              "name (letters, digits, _; at most 40)")
        self.path = home
        self.schema = schema_name
        self.where = where
        self._connect = {**connect, "autocommit": True}
        self._connect.setdefault("connect_timeout", CONNECT_TIMEOUT)
        self._lock = threading.Lock()
        self._append_key = lock_key(schema_name, "append")
        self.channel = f"syncd_{schema_name}"  # NOTIFY: entries became claimable
        self._conn: psycopg.Connection[Any] | None = None
        with self._reading():  # now: an unreachable database is refused when opened
            pass

    # -- connections -----------------------------------------------------------------------

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection to this journal's database, its schema first on the search path
        (leases, locks and verify use their own)."""
        options = f"-c search_path={self.schema} -c TimeZone=UTC"
        try:
            return psycopg.connect(**{**self._connect, "options": options})
        except psycopg.Error as exc:
            raise self._storage_error(exc) from exc

    def _storage_error(self, exc: psycopg.Error) -> JournalError:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return JournalStorageError(f"journal {self.where}: {first}")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = self.connect()
            try:
                self._prepare(PgSql(conn))
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _prepare(self, conn: PgSql) -> None:
        if schema.is_current(conn):
            return
        with conn.conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(?)", (self._append_key,))  # one creator
            schema.create(conn, self.schema)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row[0] != shared_schema.SCHEMA_VERSION:
                raise NotAJournal(f"journal {self.where} has schema version {row[0]}; "
                                  f"this code knows {shared_schema.SCHEMA_VERSION}")
            if not schema.is_current(conn):
                _rebuild(conn)
                schema.set_projections_version(conn)

    @contextmanager
    def _reading(self) -> Iterator[PgSql]:
        with self._lock:
            try:
                yield PgSql(self._connection())
            except psycopg.Error as exc:
                if self._conn is not None and self._conn.broken:
                    self._conn = None  # reconnect next time
                raise self._storage_error(exc) from exc

    @contextmanager
    def _writing(self, durable: bool = True) -> Iterator[PgSql]:
        with self._reading() as conn, conn.conn.transaction():
            if not durable:
                conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute("SELECT pg_advisory_xact_lock(?)", (self._append_key,))
            yield conn

    def leases(self, owner: str, ttl: float) -> Leases:
        """A worker's leases on entries (journal/postgres/leases.py)."""
        return Leases(self, owner, ttl)

    def advisory_lock(self, name: str) -> AdvisoryLock:
        """A lock every process on this journal sees (syncd/locks.py names them)."""
        return AdvisoryLock(self, name)

    # -- writing -----------------------------------------------------------------------------

    def append(self, events: Sequence[AnyEvent], *, durable: bool = True) -> int:
        """One transaction, projections and head row included; the last seq."""
        if not events:
            return self.last_seq()
        with self._writing(durable) as conn:
            head = self._append_in(conn, events)
        return head.seq

    def _append_in(self, conn: PgSql, events: Sequence[AnyEvent]) -> Head:
        """Append inside a write transaction the caller holds (leases finish an entry so)."""
        head, rows = stage(conn, events)
        conn.executemany(INSERT_EVENT, rows)
        conn.execute("UPDATE head SET seq = ?, hash = ? WHERE one = 1", (head.seq, head.hash))
        if any(isinstance(event, WAKING) for event in events):  # delivered at commit
            conn.execute("SELECT pg_notify(?, '')", (self.channel,))
        return head

    def rebuild_projections(self) -> None:
        with self._writing() as conn:
            _rebuild(conn)

    def _index_behind(self, conn: PgSql) -> bool:  # type: ignore[override]
        return index.tracked(conn) < tail(conn)[0]

    def _index_chunk(self, conn: PgSql) -> bool:  # type: ignore[override]
        return index.catch_up_chunk(conn)

    # -- integrity ---------------------------------------------------------------------------

    def verify(self, expect: Head | None = None) -> VerifyReport:
        try:  # an event the index cannot read stops it there; the walk reports that event
            self.catch_up_index()
        except JournalIntegrityError:
            pass
        with self._reading() as conn:
            row = conn.execute("SELECT seq, hash FROM head WHERE one = 1").fetchone()
        heads = Heads(None if row is None else Head(row[0], row[1]), True, expect)
        conn_ = self.connect()
        try:
            return verify(conn_, self.schema, heads)
        except psycopg.Error as exc:
            raise self._storage_error(exc) from exc
        finally:
            conn_.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _rebuild(conn: PgSql) -> None:
    schema.drop_projections(conn)
    schema.create_projections(conn)
    after = 0
    while True:  # a page at a time: the log may not fit in memory
        page = conn.execute("SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT 1000",
                            (after,)).fetchall()
        replay(conn, ((seq, decode_body(seq, body)) for seq, body in page))
        if len(page) < 1000:
            break
        after = page[-1][0]
    while not index.catch_up_chunk(conn):
        pass

