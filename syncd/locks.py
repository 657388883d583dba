"""OS file locks beside the journal: one daemon per journal, one run of a job at a time,
one applier per run (a daemon and a user's `syncd resume` never apply the same run at once).

flock(2) locks belong to an open file and vanish with the process, however it ends (even
SIGKILL), so a lock is never stale; the file only names the holder's pid for messages.
They are per open file, so two holders in one process exclude each other too.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from .errors import InputError, RunStateError


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


def daemon_lock(journal: Path) -> FileLock:
    return FileLock(journal.with_name(journal.name + ".daemon.lock"))


def job_lock(journal: Path, job: str) -> FileLock:
    return FileLock(journal.with_name(f"{journal.name}.job-{job}.lock"))


def run_lock(journal: Path, run_id: str) -> FileLock:
    return FileLock(journal.with_name(f"{journal.name}.runs") / f"{run_id}.lock", remove=True)


def hold_run_lock(journal: Path, run_id: str) -> FileLock:
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


def hold_daemon_lock(journal: Path) -> FileLock:
    """The daemon lock of this journal, or an InputError naming the daemon that holds it."""
    lock = daemon_lock(journal)
    if not lock.acquire():
        raise InputError(f"another syncd daemon (pid {lock.holder()}) is running on journal {journal}; "
                         "one daemon per journal")
    return lock
