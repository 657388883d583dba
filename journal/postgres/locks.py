"""Advisory locks of a Postgres journal: the same promises as syncd's flock files beside an
SQLite journal (one holder; gone with its process, however it ends), across machines.

Each lock holds its own session, so it is released when `release` closes it, and by the
server when the holder's connection drops (a killed process's socket is closed by its
kernel). The holder is told by its session's application_name, `syncd N on HOST`, so a
message's "(pid …)" reads "pid N on HOST".
"""
from __future__ import annotations

import os
import socket
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from .journal import PostgresJournal


class AdvisoryLock:
    def __init__(self, journal: PostgresJournal, name: str) -> None:
        from .journal import lock_key

        self.journal = journal
        self.name = name
        self.key = lock_key(journal.schema, name)
        self._conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free (never waits); False when another session has it."""
        conn = self.journal.connect()
        conn.execute("SELECT set_config('application_name', %s, false)",
                     (f"syncd {os.getpid()} on {socket.gethostname()}",))
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone() == (True,):
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the session's end releases the lock
            self._conn = None

    def holder(self) -> str:
        """Who holds it, as `N on HOST` ("?" when nobody or unknown)."""
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        conn = self.journal.connect()
        try:
            row = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.objid::bigint = %s AND l.objsubid = 1", (classid, objid)).fetchone()
        finally:
            conn.close()
        return str(row[0]).removeprefix("syncd ") if row and row[0] else "?"

    def held_elsewhere(self) -> bool:
        if self._conn is not None:
            return False
        if self.acquire():
            self.release()
            return False
        return True

    def __enter__(self) -> AdvisoryLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
