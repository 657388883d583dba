"""The journal's head (last seq and its chain hash), kept outside the events table too.

A hash chain proves every event it holds, but not that none were cut off its tail: delete the
last events (and rebuild the projections) and what is left is still a valid chain. So each
durable append also writes the head to a sidecar file, `<journal>-head`, fsynced; `verify` checks that the events still reach it. An operator who wants the same check
against someone who could rewrite both files publishes `syncd journal head` elsewhere and
later runs `syncd journal verify --expect SEQ:HASH`.

The sidecar only moves forward: appends from several processes write it under a flock(2)
lock (a separate file: SQLite's own POSIX locks on the journal would vanish if this process
closed any descriptor of the journal file), and a head older than the stored one is dropped.
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

import msgspec

from .chain import GENESIS

_TEXT = re.compile(r"(\d+):([0-9a-f]{64})")


class Head(msgspec.Struct, frozen=True):
    seq: int
    hash: str  # hex sha256 of the chain at `seq`; GENESIS's hex for an empty journal

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


EMPTY = Head(0, GENESIS.hex())


def parse_head(text: str) -> Head:
    """`SEQ:HASH` as `journal head` prints it; ValueError for anything else."""
    match = _TEXT.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not SEQ:HASH (a number, a colon, 64 hex digits)")
    return Head(int(match[1]), match[2])


class HeadFile:
    """`<journal>-head`: one line, `SEQ:HASH`."""

    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + "-head")
        self._lock_path = journal.with_name(journal.name + "-head.lock")

    def read(self) -> Head | None:
        """The stored head; None when there is no file. A file that does not parse is
        reported by verify as not matching, so it reads as a head no journal has."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            return parse_head(text)
        except ValueError:
            return Head(-1, text.strip()[:80])

    def advance(self, head: Head) -> None:
        """Store `head` unless a later one is stored already."""
        self._write(head, only_forward=True)

    def reset(self, head: Head) -> None:
        """Store `head` whatever is there: for a journal file that was just created, beside
        which a stale sidecar of a deleted journal may remain."""
        self._write(head, only_forward=False)

    def _write(self, head: Head, *, only_forward: bool) -> None:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            stored = self.read() if only_forward else None
            if stored is not None and stored.seq >= head.seq:
                return
            temporary = self.path.with_name(self.path.name + ".tmp")
            with open(temporary, "w") as handle:
                handle.write(f"{head}\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            _fsync_folder(self.path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
