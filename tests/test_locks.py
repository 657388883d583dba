"""One applier per run: a second process (a user's `syncd resume` beside a daemon) is refused."""
from __future__ import annotations

from pathlib import Path

from conftest import run, run_process, snapshot

from syncd.locks import FileLock, run_lock

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--copy-files")


def test_resume_is_refused_while_another_process_applies_the_run(world) -> None:
    planned = run(world, *TRANSFER, "--plan-only", "--json")
    run_id = planned.json()["run_id"]
    before = snapshot(world)
    with run_lock(world.root / "journal.db", run_id) as lock:
        assert lock.acquire()  # stands in for a daemon applying this run
        refused = run_process(world, "resume", run_id, "--yes")
        assert refused.code == 2
        assert refused.stderr.strip().splitlines()[-1] == (
            f"syncd: error: run {run_id} is being worked on by another process "
            f"(pid {lock.holder()}); wait for it to end")
        assert snapshot(world) == before  # nothing applied
    done = run(world, "resume", run_id, "--yes", "--json")
    assert done.code == 0 and done.json()["status"] == "completed"
    assert not run_lock(world.root / "journal.db", run_id).path.exists()  # no lock files pile up


def test_a_removed_lock_file_is_never_held_twice(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r.lock"
    first, second = FileLock(path, remove=True), FileLock(path, remove=True)
    assert first.acquire() and not second.acquire()
    first.release()
    assert not path.exists()
    assert second.acquire() and not FileLock(path, remove=True).acquire()
    second.release()
