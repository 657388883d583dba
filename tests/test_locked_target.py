"""A target locked by another process: syncd says so, waits up to SYNCD_LOCK_TIMEOUT seconds
with a progress line, then exits with the storage code (74), nothing written."""
from __future__ import annotations

import sqlite3
import threading
import time

from conftest import run_process, snapshot

COPY = ("copy", "-s", "prod", "-t", "dev", "--entity", "vendors", "--yes")


def hold_exclusive(db, seconds: float) -> threading.Thread:
    ready = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")  # readers are locked out too
        ready.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    ready.wait(10)
    return thread


def test_a_target_locked_past_the_wait_exits_74_and_says_so(world) -> None:
    before = snapshot(world)
    holder = hold_exclusive(world.dev_db, 4)
    result = run_process(world, *COPY, env={"SYNCD_LOCK_TIMEOUT": "1.5"})
    holder.join()
    assert result.code == 74, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "is locked by another process; waiting" in lines[0]  # progress while it waits
    assert lines[-1] == (f"syncd: error: environment 'dev': database {world.dev_db} is locked by "
                         "another process; gave up after 1.5 s (SYNCD_LOCK_TIMEOUT)")
    assert "Traceback" not in result.stderr and "not a readable" not in result.stderr
    assert snapshot(world) == before
    assert not (world.root / "journal.db").exists()


def test_a_lock_released_within_the_wait_lets_the_run_go_on(world) -> None:
    holder = hold_exclusive(world.dev_db, 1.0)
    result = run_process(world, *COPY, "--json", env={"SYNCD_LOCK_TIMEOUT": "20"})
    holder.join()
    assert result.code == 0, result.stderr
    assert "is locked by another process; waiting" in result.stderr
    assert result.json()["status"] == "completed"
