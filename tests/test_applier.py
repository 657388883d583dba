"""The applier: retries transient errors, resumes only what is left."""
from __future__ import annotations

from typing import Any, Sequence

import anyio

from conftest import run, snapshot
from journal import EntryApplied, open_journal
from syncd.applier import Applier
from syncd.config import load_config
from syncd.errors import TransientError
from syncd.operations import load_schema, open_store


class FlakyStore:
    """A real SQLite store whose first `failures` creates fail as a locked database would."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create(self, entity: Any, columns: Sequence[str], rows: Sequence[Any]) -> list[bool]:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientError("sqlite: database is locked (injected)")
        return await self.inner.create(entity, columns, rows)


def apply_with(world, run_id: str, failures: int) -> str:
    config = load_config(str(world.config))
    journal = open_journal(world.root / "journal.db")

    async def go() -> str:
        store = FlakyStore(open_store(config, "dev", readonly=False), failures)
        schema = await load_schema(config, store.inner)
        try:
            return (await Applier(journal, run_id, store, schema).run()).status
        finally:
            await store.inner.close()

    return anyio.run(go)


def test_transient_errors_are_retried_with_backoff(world, tmp_path) -> None:
    planned = run(world, "transfer", "-s", "prod", "-t", "dev", "-l", "3", "--plan-only", "--json").json()
    assert apply_with(world, planned["run_id"], failures=3) == "completed"
    journal = open_journal(world.root / "journal.db")
    retries = [r.event.retries for r in journal.read(run=planned["run_id"]) if isinstance(r.event, EntryApplied)]
    assert retries[0] == 3 and sum(retries) == 3
    assert len(snapshot(world)["videos"]) == 3


def test_persistent_transient_errors_fail_the_entry(world) -> None:
    planned = run(world, "transfer", "-s", "prod", "-t", "dev", "-l", "3", "--plan-only", "--json").json()
    assert apply_with(world, planned["run_id"], failures=10**6) == "failed"
    rows = run(world, "show", planned["run_id"], "--json").json()["entries"]
    assert rows[0]["state"] == "failed" and "locked" in rows[0]["error"]
    # every create fails: parents without parents are tried once each; whatever depends
    # on a failed entity (videos and its children) is never attempted
    states = {e["entity"]: e["state"] for e in rows}
    assert states["collectors"] == states["locations"] == "failed"
    for child in ("videos", "annotation_runs", "segmentations", "video_steps"):
        assert states[child] == "pending"
    # once the cause is gone, resume applies exactly the failed and pending entries
    assert run(world, "resume", planned["run_id"], "--yes").code == 0
    journal = open_journal(world.root / "journal.db")
    events = list(journal.read(run=planned["run_id"]))
    last_start = max(i for i, r in enumerate(events) if r.type == "ApplyStarted")
    resumed = [r.event.entry for r in events[last_start:] if isinstance(r.event, EntryApplied)]
    assert sorted(resumed) == [e["entry"] for e in rows if e["state"] in ("failed", "pending")]
