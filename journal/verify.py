"""verify: walk the chain, then prove the projections are what the events say they are
(the lazily built record index up to the seq its tracking row names).

Runs on a private connection whose main database is a scratch file holding freshly rebuilt
projections, with the live journal attached as `live`: one read snapshot covers both the
walk and the comparison, and the live journal's connection is never blocked.
"""
from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import msgspec

from . import index
from .chain import GENESIS, link
from .events import AnyEvent, decode, type_name
from .head import Head
from .projections import project
from .rows import VerifyReport
from .schema import PROJECTIONS, create_projections
from .sql import Sql

# A difference is reported with one example row, cut to keep problems one readable line.
EXAMPLE_CHARS = 160


class Walk:
    """Checks events one by one in seq order and replays the good ones into `scratch`;
    `replaying` wraps each replay (Postgres: a savepoint, so one failure does not end the
    transaction) and `errors` are what a replay that fails may raise."""

    def __init__(self, scratch: Sql, errors: tuple[type[Exception], ...] = (sqlite3.Error,),
                 replaying: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        self.scratch = scratch
        self.errors = errors
        self.replaying = replaying
        self.expected = 1
        self.previous = GENESIS
        self.count = 0
        self.problems: list[str] = []

    def step(self, seq: int, at: str, run: str, type_: str, body: bytes, stored: str) -> None:
        self.count += 1
        if seq != self.expected:
            self.problems.append(f"seq {self.expected}: missing (the next stored event is seq {seq})")
        if link(self.previous, body).hex() != stored:
            self.problems.append(
                f"seq {seq}: hash does not match the chain (edited, reordered, or an earlier event removed)"
            )
        # Continue from the stored hash, so one bad event is reported once, not at every later seq.
        self.previous = _hash_bytes(stored)
        self.expected = seq + 1
        event = self._decode(seq, body)
        if event is not None:
            self._check_columns(seq, (at, run, type_), event)
            self._replay(seq, event)

    def _decode(self, seq: int, body: bytes) -> AnyEvent | None:
        try:
            return decode(body)
        except msgspec.DecodeError as exc:
            self.problems.append(f"seq {seq}: body does not decode ({exc})")
            return None

    def _check_columns(self, seq: int, columns: tuple[str, str, str], event: AnyEvent) -> None:
        body = (event.at, event.run, type_name(event))
        for name, column, inside in zip(("at", "run", "type"), columns, body):
            if column != inside:
                self.problems.append(f"seq {seq}: column {name} is {column!r} but the body says {inside!r}")

    def _replay(self, seq: int, event: AnyEvent) -> None:
        try:
            with self.replaying():
                project(self.scratch, seq, event)
        except self.errors as exc:
            self.problems.append(f"seq {seq}: replaying {type_name(event)} failed ({exc})")


def _hash_bytes(stored: str) -> bytes:
    try:
        return bytes.fromhex(stored)
    except (TypeError, ValueError):
        return b""  # unreadable: the next event's link check fails and says so


def compare(conn: Sql, live: str = "live", rebuilt: str = "main") -> list[str]:
    """Each projection table of schema `live` against its rebuild in schema `rebuilt`."""
    problems = []
    for table, pk in PROJECTIONS.items():
        try:
            problem = _compare_table(conn, f"{live}.{table}", f"{rebuilt}.{table}", ", ".join(pk))
        except sqlite3.Error as exc:
            problem = f"projection {table} cannot be compared ({exc})"
        if problem:
            problems.append(problem)
    return problems


def _compare_table(conn: Sql, live: str, rebuilt: str, order: str) -> str | None:
    table = live.rsplit(".", 1)[1]
    live_only = f"SELECT * FROM {live} EXCEPT SELECT * FROM {rebuilt}"
    rebuilt_only = f"SELECT * FROM {rebuilt} EXCEPT SELECT * FROM {live}"
    extra = conn.execute(f"SELECT COUNT(*) FROM ({live_only}) AS differing").fetchone()[0]
    missing = conn.execute(f"SELECT COUNT(*) FROM ({rebuilt_only}) AS differing").fetchone()[0]
    if not extra and not missing:
        return None
    side, query = ("live", live_only) if extra else ("rebuilt", rebuilt_only)
    example = conn.execute(f"SELECT * FROM ({query}) AS differing ORDER BY {order} LIMIT 1").fetchone()
    return (
        f"projection {table} differs: {extra} rows only live, {missing} only rebuilt;"
        f" first {side}-only row: {repr(example)[:EXAMPLE_CHARS]}"
    )


class Heads(msgspec.Struct, frozen=True):
    """What the events must still reach: the sidecar's head (None when the file is gone;
    `sidecar_expected` says whether it should be there) and one the operator published."""

    sidecar: Head | None
    sidecar_expected: bool
    expect: Head | None = None


def head_problems(conn: Sql, heads: Heads, events: str = "live.events") -> list[str]:
    last = conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {events}").fetchone()[0]
    problems = []
    if heads.sidecar is None and heads.sidecar_expected:
        problems.append("the head file is missing: cannot tell whether events were cut off the end")
    for name, head in (("the head file", heads.sidecar), ("the expected head", heads.expect)):
        if head is not None:
            problems.extend(_reaches(conn, events, last, name, head))
    return problems


def _reaches(conn: Sql, events: str, last: int, name: str, head: Head) -> list[str]:
    if head.seq < 0:
        return [f"{name} is unreadable ({head.hash!r})"]
    if head.seq > last:
        return [f"events end at seq {last} but {name} says seq {head.seq}: events were cut off the end"]
    if head.seq == 0:
        return []
    stored = conn.execute(f"SELECT hash FROM {events} WHERE seq = ?", (head.seq,)).fetchone()
    if stored is None:
        return [f"seq {head.seq}: missing, but {name} names it"]
    if stored[0] != head.hash:
        return [f"seq {head.seq}: hash {stored[0]} is not {head.hash}, which {name} names"]
    return []


def _verify(scratch: sqlite3.Connection, live: Path, heads: Heads) -> VerifyReport:
    from sqlite_utils import Database  # verify is rare: `syncd runs` need not import it

    create_projections(Database(scratch, recursive_triggers=False, execute_plugins=False))
    scratch.execute("ATTACH DATABASE ? AS live", (str(live),))  # not allowed inside a transaction
    scratch.execute("BEGIN")
    walk = Walk(scratch)
    for row in scratch.execute("SELECT seq, at, run, type, body, hash FROM live.events ORDER BY seq"):
        walk.step(*row)
    # The live record index is built lazily: rebuild it up to the seq it says it covers,
    # read in the same snapshot as the walk.
    upto = index.tracked(scratch, "live")
    planned = scratch.execute(
        "SELECT seq, body FROM live.events WHERE type = 'EntryPlanned' AND seq <= ? ORDER BY seq", (upto,)
    )
    index.build(scratch, planned, upto)
    problems = walk.problems + head_problems(scratch, heads) + compare(scratch)
    scratch.execute("ROLLBACK")  # the scratch rows have served their purpose
    return VerifyReport(ok=not problems, events=walk.count, problems=problems)


def verify_sqlite(live: Path, heads: Heads) -> VerifyReport:
    """`heads` must be read before this starts: the snapshot then holds every event they name."""
    with tempfile.TemporaryDirectory(prefix="journal-verify-") as folder:
        scratch = sqlite3.connect(Path(folder) / "rebuilt.db", isolation_level=None)
        try:
            # Throwaway data: no point paying for durability.
            scratch.execute("PRAGMA synchronous=OFF")
            return _verify(scratch, live, heads)
        finally:
            scratch.close()
