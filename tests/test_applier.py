"""The applier: retries a locked target, resumes only what is left.

The lock is real: a second connection to the target database holds its write lock
(`BEGIN IMMEDIATE`, as a concurrent writer would), so the store's own mapping of sqlite3's
"database is locked" decides whether the applier retries.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Sequence

import anyio
import pytest

from conftest import run, snapshot
from journal import ApplyStarted, EntryApplied, open_journal
from syncd.applier import Applier
from syncd.config import load_config
from syncd.operations import load_schema, open_store
from syncd.retry import RETRIES

BUSY_TIMEOUT_MS = 20  # the store waits 5 s for a lock; a locked attempt here fails after 20 ms


class WriteLock:
    """The target's write lock, held by another connection."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None)
        self.held = False

    def hold(self, wanted: bool) -> None:
        if wanted and not self.held:
            self.conn.execute("BEGIN IMMEDIATE")
        elif self.held and not wanted:
            self.conn.execute("ROLLBACK")
        self.held = wanted

    def close(self) -> None:
        self.hold(False)
        self.conn.close()


class ContendedStore:
    """The real SQLite target store; another connection holds the database's write lock
    while the applier makes create calls number `locked` (1-based, retries counted).
    Nothing is raised here: the locked store itself fails, and maps the error."""

    def __init__(self, inner: Any, lock: WriteLock, locked: range) -> None:
        self.inner, self.lock, self.locked, self.calls = inner, lock, locked, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create(self, entity: Any, columns: Sequence[str], rows: Sequence[Any]) -> list[bool]:
        self.calls += 1
        self.lock.hold(self.calls in self.locked)
        return await self.inner.create(entity, columns, rows)


def apply_with(world, run_id: str, locked: range) -> str:
    config = load_config(str(world.config))
    journal = open_journal(world.root / "journal.db")
    lock = WriteLock(world.dev_db)

    async def go() -> str:
        inner = open_store(config, "dev", readonly=False)
        inner._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        store = ContendedStore(inner, lock, locked)
        schema = await load_schema(config, inner)
        try:
            return (await Applier(journal, run_id, store, schema).run()).status
        finally:
            await inner.close()

    try:
        return anyio.run(go)
    finally:
        lock.close()


def plan_only(world) -> str:
    planned = run(world, "transfer", "-s", "prod", "-t", "dev", "-l", "3", "--plan-only", "--json")
    assert planned.code == 0, planned.stderr
    return planned.json()["run_id"]


def outcomes(world, run_id: str) -> list[EntryApplied]:
    journal = open_journal(world.root / "journal.db")
    return [r.event for r in journal.read(run=run_id) if isinstance(r.event, EntryApplied)]


def test_a_locked_target_is_retried_with_backoff(world) -> None:
    run_id = plan_only(world)
    before = snapshot(world)
    # the first entry meets the lock three times, then it is released
    assert apply_with(world, run_id, locked=range(1, 4)) == "completed"
    retries = [e.retries for e in outcomes(world, run_id)]
    assert retries[0] == 3 and sum(retries) == 3
    assert all(e.state == "done" for e in outcomes(world, run_id))
    got = snapshot(world)
    assert len(got["videos"]) == len(before["videos"]) + 3
    assert run(world, "show", run_id, "--json").json()["status"] == "completed"


def test_a_target_locked_for_good_fails_the_entry_and_resume_applies_only_what_is_left(
        world, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncd.applier.backoff", lambda attempt: 0.0)  # the count matters here
    run_id = plan_only(world)
    # the first create is written; from then on another writer holds the target's lock
    assert apply_with(world, run_id, locked=range(2, 10**6)) == "failed"
    rows = run(world, "show", run_id, "--json").json()["entries"]
    creates = [e for e in rows if e["op"] == "create"]
    assert rows[0] == creates[0] and rows[0]["state"] == "done"
    failed = creates[1]
    assert failed["state"] == "failed" and "database is locked" in failed["error"]
    assert failed["retries"] == RETRIES  # transient: retried until the retries ran out
    # parents without parents are tried once each; whatever depends on a failed entity
    # (videos and its children) is never attempted
    states = {e["entity"]: e["state"] for e in creates}
    assert states["locations"] == states["vendors"] == "failed"
    for child in ("videos", "annotation_runs", "segmentations", "video_steps"):
        assert states[child] == "pending"
    # once the lock is gone, resume applies exactly the failed and pending entries: not the
    # done entry 1 again
    left = [e["entry"] for e in rows if e["state"] in ("failed", "pending")]
    assert 1 not in left
    journal = open_journal(world.root / "journal.db")
    seen = journal.last_seq()
    resumed = run(world, "resume", run_id, "--yes")
    assert resumed.code == 0, resumed.stderr
    events = [r.event for r in journal.read(after=seen, run=run_id)]
    assert sum(isinstance(e, ApplyStarted) for e in events) == 1
    assert [e.entry for e in events if isinstance(e, EntryApplied)] == left
    assert all(e["state"] == "done" for e in run(world, "show", run_id, "--json").json()["entries"])
