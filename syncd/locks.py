"""Locks on a journal: one daemon per SQLite journal, one run of a job at a time, one applier
per run (a daemon and a user's `syncd resume` never apply the same run at once).

Beside an SQLite journal they are OS file locks (below); on a Postgres journal, which
processes on several machines share, advisory locks of its database with the same promises
(journal/postgres/locks.py). Callers hand over the journal (or an SQLite journal's path).

flock(2) locks belong to an open file and vanish with the process, however it ends (even
SIGKILL), so a lock is never stale; the file only names the holder's pid for messages.
They are per open file, so two holders in one process exclude each other too.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from journal import Journal

from .errors import InputError, RunStateError


class Lock(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> str: ...

    def held_elsewhere(self) -> bool: ...

    def __enter__(self) -> Lock: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


Where = Journal | Path  # a journal, or an SQLite journal's path


def shared(where: Where) -> bool:
    """Whether several daemons may share this journal (a Postgres one: they share its jobs)."""
    return hasattr(where, "advisory_lock")


def _named(where: Where, name: str, file: str, *, remove: bool = False) -> Lock:
    if shared(where):
        lock: Lock = where.advisory_lock(name)  # type: ignore[union-attr]
        return lock
    path = where if isinstance(where, Path) else where.path
    return FileLock(path.parent / (path.name + file), remove=remove)


class FileLock:
    def __init__(self, path: Path, *, remove: bool = False) -> None:
        self.path = path
        self.remove = remove  # delete the file on release (one file per run would pile up)
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free (never waits); False when another holder has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # not "w": that would erase the holder's pid
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        if self.remove and not _still_named(handle, self.path):
            handle.close()  # its holder released and removed it just now: take the new one
            return self.acquire()
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            if self.remove:
                self.path.unlink(missing_ok=True)  # before closing: still ours to remove
            self._file.close()  # closing the file releases the lock
            self._file = None

    def holder(self) -> str:
        """The pid written by whoever holds the lock ("?" if unreadable)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def held_elsewhere(self) -> bool:
        """Whether someone else holds the lock right now (probes by taking it briefly; no
        file means no holder, and nothing is created to find that out)."""
        if self._file is not None or not self.path.exists():
            return False
        if self.acquire():
            self.release()
            return False
        return True

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def daemon_lock(journal: Where) -> Lock:
    return _named(journal, "daemon", ".daemon.lock")


def job_lock(journal: Where, job: str) -> Lock:
    return _named(journal, f"job {job}", f".job-{job}.lock")


def run_lock(journal: Where, run_id: str) -> Lock:
    return _named(journal, f"run {run_id}", f".runs/{run_id}.lock", remove=True)


def hold_run_lock(journal: Where, run_id: str) -> Lock:
    """The run's applier lock, or a RunStateError naming the process that holds it."""
    lock = run_lock(journal, run_id)
    if not lock.acquire():
        raise RunStateError(f"run {run_id} is being worked on by another process "
                            f"(pid {lock.holder()}); wait for it to end")
    return lock


def _still_named(handle: IO[str], path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def hold_daemon_lock(journal: Where) -> Lock | None:
    """The daemon lock of this journal, or an InputError naming the daemon that holds it;
    None for a Postgres journal, which any number of daemons share (one plans each due run:
    the job lock)."""
    if shared(journal):
        return None
    lock = daemon_lock(journal)
    if not lock.acquire():
        where = journal if isinstance(journal, Path) else journal.path
        raise InputError(f"another syncd daemon (pid {lock.holder()}) is running on journal {where}; "
                         "one daemon per journal")
    return lock
