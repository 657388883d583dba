"""Checkpointed plans applied while planning goes on (architecture §7), killed in every new window.

A real `syncd transfer --yes` plans in its own process and starts an applier process
(syncd/follower.py) at its first checkpoint. Each test kills one of the two, by a failpoint or
from outside, then checks that the run ends exactly as an uninterrupted run: the same target
rows, the same entries with the same outcomes, each entry applied once, an intact journal, and
no applier process left behind. The reference is the same transfer planned, then applied, in
one process (SYNCD_OVERLAP=0): overlapping must change nothing but the time it takes.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import world as world_module
from conftest import SYNCD, Result, run, run_process, snapshot
from journal import ApplyStarted, CheckpointSealed, EntryApplied, PlanSealed, open_journal

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--yes", "--json")
SEED = 11
VIDEOS = 60
# Groups of 10 roots and a durable append at every checkpoint: six groups, five checkpoints.
KNOBS = {"SYNCD_CHUNK_ROOTS": "10", "SYNCD_GROUP_RECORDS": "50", "SYNCD_FAILPOINT": ""}


@dataclass
class Reference:
    snapshot: dict[str, list[tuple]]
    entries: list[tuple[Any, ...]]  # (entity, op, records, created, skipped) per entry


def entries_of(w: world_module.World, run_id: str) -> list[tuple[Any, ...]]:
    show = run(w, "show", run_id, "--json").json()
    assert show["status"] == "completed", show["status"]
    assert {e["state"] for e in show["entries"]} == {"done"}
    return [(e["entity"], e["op"], e["records"], e["created"], e["skipped"]) for e in show["entries"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    w = world_module.build_world(tmp_path_factory.mktemp("ref") / "w", videos=VIDEOS, seed=SEED, files=False)
    result = run_process(w, *TRANSFER, env={**KNOBS, "SYNCD_OVERLAP": "0"})
    assert result.code == 0, result.stderr
    entries = entries_of(w, result.json()["run_id"])
    assert len(entries) >= 20 and sum(e[3] for e in entries) > 400
    return Reference(snapshot(w), entries)


def fresh(tmp_path: Path) -> world_module.World:
    return world_module.build_world(tmp_path / "w", videos=VIDEOS, seed=SEED, files=False)


def only_run(w: world_module.World) -> dict[str, Any]:
    [row] = run(w, "runs", "--json").json()
    return row


def events(w: world_module.World, after: int = 0) -> list[Any]:
    return [r.event for r in open_journal(w.root / "journal.db").read(after=after)]


def followers(run_id: str) -> list[int]:
    """Applier processes of this run still alive."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if b"syncd.follower" in argv and run_id.encode() in argv:
            found.append(int(cmdline.parent.name))
    return found


def no_follower_left(run_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while followers(run_id):
        assert time.monotonic() < deadline, f"applier process of {run_id} still running"
        time.sleep(0.02)


def assert_like_reference(w: world_module.World, ref: Reference, run_id: str) -> None:
    assert snapshot(w) == ref.snapshot
    assert entries_of(w, run_id) == ref.entries
    verify = run(w, "journal", "verify")
    assert verify.code == 0, verify.stdout + verify.stderr
    no_follower_left(run_id)


def resume(w: world_module.World, run_id: str) -> Result:
    """Resume, checking it costs what is left: no entry done before it is applied again, and
    none twice."""
    journal = open_journal(w.root / "journal.db")
    seen = journal.last_seq()
    done_before = {e.entry for e in journal.entries(run_id) if e.state == "done"}
    result = run_process(w, "resume", run_id, "--yes", "--json", env=KNOBS)
    assert result.code == 0, result.stderr
    applied = [e.entry for e in events(w, seen) if isinstance(e, EntryApplied)]
    assert applied and len(applied) == len(set(applied)), applied
    assert not set(applied) & done_before
    return result


def test_overlapped_run_equals_sequential_run(tmp_path: Path, reference: Reference) -> None:
    w = fresh(tmp_path)
    result = run_process(w, *TRANSFER, env=KNOBS)
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    assert_like_reference(w, reference, run_id)
    log = events(w)
    assert sum(isinstance(e, CheckpointSealed) for e in log) >= 3
    assert sum(isinstance(e, ApplyStarted) for e in log) == 1  # one attempt: the applier process's
    assert only_run(w)["status"] == "completed"


def stopped_after_first_checkpoint(w: world_module.World) -> subprocess.Popen[str]:
    """A transfer that stops itself (SIGSTOP) right after its first checkpoint is durable and
    its applier process started. The target is put in WAL mode first, so that a read the
    frozen planner had in flight cannot hold the applier process's commits back."""
    with sqlite3.connect(w.dev_db) as db:
        assert db.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    proc = subprocess.Popen([str(SYNCD), "--config", str(w.config), *TRANSFER],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **KNOBS, "SYNCD_FAILPOINT": "plan.after-checkpoint:1:stop"})
    wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] in "Tt", proc)
    return proc


def test_applier_process_applies_checkpoints_while_the_planner_is_stopped(
        tmp_path: Path, reference: Reference) -> None:
    """The window of part 1: the planner is stopped after its first checkpoint, and the
    entries of that checkpoint get applied before the plan is sealed, by the other process."""
    w = fresh(tmp_path)
    proc = stopped_after_first_checkpoint(w)
    try:
        wait_for(lambda: any(isinstance(e, EntryApplied) for e in events(w)), None)
        log = events(w)
        assert not any(isinstance(e, PlanSealed) for e in log)  # applied while planning
        [sealed] = [e.entries for e in log if isinstance(e, CheckpointSealed)]
        assert all(e.entry <= sealed for e in log if isinstance(e, EntryApplied))
    finally:
        proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert_like_reference(w, reference, json.loads(stdout)["run_id"])


def wait_for(condition: Any, proc: subprocess.Popen[str] | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _safe(condition):
        assert proc is None or proc.poll() is None, "the run ended before the window was reached"
        assert time.monotonic() < deadline, "the window was never reached"
        time.sleep(0.005)


def _safe(condition: Any) -> bool:
    try:
        return bool(condition())
    except Exception:  # the journal does not exist yet
        return False


@pytest.mark.parametrize("n", [1, 3])
def test_planner_killed_between_checkpoints_resumes_from_the_last(
        tmp_path: Path, reference: Reference, n: int) -> None:
    """A checkpoint sealed, maybe not applied yet, and the planner dies: its applier process
    stops (its parent is gone); resume plans on from that checkpoint and applies the rest."""
    w = fresh(tmp_path)
    killed = run_process(w, *TRANSFER, env={**KNOBS, "SYNCD_FAILPOINT": f"plan.after-checkpoint:{n}"})
    assert killed.code == -signal.SIGKILL, (killed.code, killed.stderr)
    row = only_run(w)
    assert row["sealed_at"] is None
    run_id = row["run_id"]
    no_follower_left(run_id)
    checkpoints = [e for e in events(w) if isinstance(e, CheckpointSealed)]
    assert len(checkpoints) == n
    result = resume(w, run_id)
    assert f"planning it on from its checkpoint (entry {checkpoints[-1].entries})" in result.stderr
    assert_like_reference(w, reference, run_id)


@pytest.mark.parametrize("point", ["follower/apply.before-entry:2", "follower/apply.after-effect:1",
                                   "follower/apply.after-effect:5", "follower/apply.after-outcome:3"])
def test_applier_process_killed_while_planning_goes_on(
        tmp_path: Path, reference: Reference, point: str) -> None:
    """The applier process dies (its entry in flight written or not); the planner goes on,
    then applies what is left itself: the run completes as a clean run, and the entry whose
    outcome was lost is journaled created, as a clean run journals it."""
    w = fresh(tmp_path)
    result = run_process(w, *TRANSFER, env={**KNOBS, "SYNCD_FAILPOINT": point})
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "completed"
    run_id = result.json()["run_id"]
    log = events(w)
    assert sum(isinstance(e, ApplyStarted) for e in log) == 2  # the process's, then the planner's
    assert_like_reference(w, reference, run_id)


def test_planner_killed_from_outside_while_its_applier_process_works(
        tmp_path: Path, reference: Reference) -> None:
    w = fresh(tmp_path)
    proc = stopped_after_first_checkpoint(w)
    wait_for(lambda: any(isinstance(e, EntryApplied) for e in events(w)), None)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run_id = only_run(w)["run_id"]
    no_follower_left(run_id)  # it saw its parent gone
    assert only_run(w)["status"] != "completed"
    resume(w, run_id)
    assert_like_reference(w, reference, run_id)


def test_applier_process_killed_from_outside(tmp_path: Path, reference: Reference) -> None:
    w = fresh(tmp_path)
    proc = stopped_after_first_checkpoint(w)  # the planner waits; its applier process works on
    try:
        [pid] = followers(only_run(w)["run_id"])
        wait_for(lambda: any(isinstance(e, EntryApplied) for e in events(w)), None)
        os.kill(pid, signal.SIGKILL)
    finally:
        proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    run_id = json.loads(stdout)["run_id"]
    assert sum(isinstance(e, ApplyStarted) for e in events(w)) == 2  # the planner took over
    assert_like_reference(w, reference, run_id)


def test_sigterm_while_both_work_interrupts_then_resume_equals_clean_run(
        tmp_path: Path, reference: Reference) -> None:
    """SIGTERM to the command (as `kill PID` sends it) while its applier process works: the
    planner stops at a group boundary and stops its applier process after the entry in hand;
    the run is interrupted, nothing half-applied, and resume finishes it as a clean run."""
    w = fresh(tmp_path)
    proc = stopped_after_first_checkpoint(w)
    run_id = only_run(w)["run_id"]
    assert followers(run_id)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, (proc.returncode, stderr)
    assert "Traceback" not in stderr and "syncd resume" in stderr
    no_follower_left(run_id)
    row = only_run(w)
    assert (row["status"], row["sealed_at"]) == ("interrupted", None)
    entries = run(w, "show", run_id, "--json").json()["entries"]
    assert {e["state"] for e in entries} <= {"done", "pending"}
    resume(w, run_id)
    assert_like_reference(w, reference, run_id)
