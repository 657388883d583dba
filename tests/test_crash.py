"""Invariant 2 (architecture §3): exactly-once effect.

A real `syncd transfer` process is killed (SIGKILL, by a failpoint or from outside, or stopped
by SIGTERM), then resumed; the target must equal an uninterrupted run on a world built from the
same seed: same rows, same files, no temp files left, an intact journal. The resume must apply
exactly the entries the journal had not recorded as done (a run cut off while planning is
planned again, then applied whole), and every signal sent must be shown to have landed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import world as world_module
from conftest import SYNCD, Result, checkpoint_every, files, run, run_process, snapshot
from journal import ApplyStarted, EntryApplied, Journal, open_journal
from syncd import failpoints, journaling

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes", "--json")
SEED = 7
SWEEP_VIDEOS = 30
SIGNAL_VIDEOS = 150
# Records per durable plan append in the sweep (SYNCD_GROUP_RECORDS): small, so the plan of the
# sweep's world takes several appends and plan.after-append:1..3 kill a run cut off while
# planning (RunStarted and some entries durable, no seal); "last" is the seal's append.
SWEEP_GROUP_RECORDS = 50

# (point, N): kill at the Nth hit; "last" is a clean run's last hit, "past" one more than that
# (the point is never reached that often, so the run must complete untouched).
SWEEP: list[tuple[str, int | str]] = [
    *(("plan.after-append", n) for n in (1, 2, 3, "last", "past")),
    *(("plan.after-checkpoint", n) for n in (1, "last")),  # between two checkpoints
    *(("apply.before-entry", n) for n in (1, 6, "last", "past")),
    *(("apply.after-effect", n) for n in (*range(1, 9), "last")),  # effect done, outcome lost
    *(("apply.after-outcome", n) for n in (1, 5, "last")),
    *(("store.before-commit", n) for n in (1, "last")),
    *(("file.before-rename", n) for n in (1, 100, "last")),
    *(("file.after-copy", n) for n in (1, 120, "last")),
]


WRITES = ("create", "update", "delete")  # entry ops that write records in a target transaction
POINTS = ("plan.after-append", "plan.after-checkpoint", "apply.before-entry", "store.before-commit", "apply.after-effect",
          "apply.after-outcome", "file.before-rename", "file.after-copy")


@dataclass
class Reference:
    world: world_module.World
    snapshot: dict[str, list[tuple]]
    files: dict[str, str]
    entries: list[dict[str, Any]]
    output: dict[str, Any]
    counted: Counter[str]  # failpoint → hits in the clean run

    def hits(self, point: str) -> int:
        return self.counted[point]

    def nth(self, point: str, n: int | str) -> int:
        if n == "last":
            return self.hits(point)
        if n == "past":
            return self.hits(point) + 1
        assert isinstance(n, int)
        return n


def reference_run(root: Path, videos: int, group_records: int | None = None) -> Reference:
    """An uninterrupted transfer, in-process, counting how often each failpoint is reached
    (with plan appends of `group_records` records, as SYNCD_GROUP_RECORDS sets them)."""
    w = world_module.build_world(root, videos=videos, seed=SEED)
    counted: Counter[str] = Counter()
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:  # file copies run in worker threads
            counted[name] += 1

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(failpoints, "hit", count)
        if group_records is not None:
            mp.setattr(journaling, "GROUP_RECORDS", group_records)
        result = run(w, *TRANSFER)
    assert result.code == 0, result.stderr
    output = result.json()
    assert output["status"] == "completed"
    show = run(w, "show", output["run_id"], "--json").json()
    assert all(e["state"] == "done" for e in show["entries"])
    assert set(counted) <= set(POINTS)
    return Reference(w, snapshot(w), files(w), show["entries"], output, counted)


# This module kills the one process of a run planned, then applied (SYNCD_OVERLAP=0): the
# applier process of an overlapped run has its own sweep (test_overlap_crash.py). Groups of
# CHUNK_ROOTS roots make the plan several checkpoints, so plan.after-append:1..3 cut planning
# off between two of them (a resume plans on from the last).
CHUNK_ROOTS = 8


@pytest.fixture(scope="module", autouse=True)
def sequential_checkpointed() -> Any:
    with checkpoint_every(CHUNK_ROOTS, group_records=None, overlap=False):
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    ref = reference_run(tmp_path_factory.mktemp("reference") / "w", SWEEP_VIDEOS,
                        SWEEP_GROUP_RECORDS)
    # every record entity and the files got written, every point is reached
    assert [e["entity"] for e in ref.entries][0] == "files"
    assert {e["entity"] for e in ref.entries} == {
        "files", "collectors", "devices", "locations", "vendors", "videos", "annotation_runs",
        "segmentations", "video_steps"}
    n_files = sum(e["records"] for e in ref.entries if e["entity"] == "files")
    assert n_files == len(ref.files) > 100
    for point in ("apply.before-entry", "apply.after-effect", "apply.after-outcome"):
        assert ref.hits(point) == len(ref.entries), point
    assert ref.hits("file.after-copy") == ref.hits("file.before-rename") == n_files
    writing = [e for e in ref.entries if e["op"] in WRITES]
    assert ref.hits("store.before-commit") >= len(writing) - 1
    # plan.after-append:1..3 come before the seal's append
    assert ref.hits("plan.after-append") >= 4
    return ref


@pytest.fixture(scope="module")
def big_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference_run(tmp_path_factory.mktemp("big-reference") / "w", SIGNAL_VIDEOS)


# -- helpers ------------------------------------------------------------------------------------

def runs_of(w: world_module.World) -> list[dict[str, Any]]:
    result = run(w, "runs", "--json")
    assert result.code == 0, result.stderr
    return result.json()


def temp_files(w: world_module.World) -> list[str]:
    return sorted(p.relative_to(w.dev_files).as_posix()
                  for p in w.dev_files.rglob(".*.syncd-*"))


def event_count(w: world_module.World) -> int:
    result = run(w, "log", "--json")
    assert result.code == 0, result.stderr
    return len(result.stdout.splitlines())


def journal_of(w: world_module.World) -> Journal:
    return open_journal(w.root / "journal.db")


def left_to_apply(w: world_module.World, ref: Reference, row: dict[str, Any]) -> list[int]:
    """The entries a resume of this run must apply: those the journal has not recorded as
    done; all of them when planning was cut off (the plan is made again); none when the run
    is completed."""
    if row["status"] == "completed":
        return []
    if row["sealed_at"] is None:
        return [e["entry"] for e in ref.entries]
    entries = run(w, "show", row["run_id"], "--json").json()["entries"]
    return [e["entry"] for e in entries if e["state"] != "done"]


def applied_since(w: world_module.World, run_id: str, seq: int) -> tuple[int, list[int]]:
    """Apply attempts started and entries applied, in order, after journal seq `seq`."""
    events = [r.event for r in journal_of(w).read(after=seq, run=run_id)]
    return (sum(isinstance(e, ApplyStarted) for e in events),
            [e.entry for e in events if isinstance(e, EntryApplied)])


def resume_and_check(w: world_module.World, ref: Reference, initial: dict[str, list[tuple]]) -> str:
    """Resume the world's one run (or transfer again if none is journaled) and compare.

    `initial` is the target's snapshot before the killed run. The resume must apply exactly
    the entries not done yet: a done entry applied again is a bug even when, being
    idempotent, it leaves the target as it was.
    """
    found = runs_of(w)
    assert len(found) <= 1, found
    if not found:  # died before RunStarted was durable: nothing journaled, nothing written
        assert files(w) == {}
        assert snapshot(w) == initial
        result = run_process(w, *TRANSFER)
        assert result.code == 0, result.stderr
        found = runs_of(w)
    row = found[0]
    run_id = row["run_id"]
    left = left_to_apply(w, ref, row)
    seen = journal_of(w).last_seq()
    resumed = run_process(w, "resume", run_id, "--yes", "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["status"] == "completed"
    if row["status"] != "completed" and row["sealed_at"] is None:
        assert "cut off while planning" in resumed.stderr, resumed.stderr
    assert applied_since(w, run_id, seen) == (0 if row["status"] == "completed" else 1, left)
    assert_same_as_reference(w, ref, run_id)

    # resuming a completed run is a no-op: exit 0, no new events, target unchanged
    events = event_count(w)
    again = run(w, "resume", run_id, "--yes")
    assert again.code == 0, again.stderr
    assert "already completed" in again.stderr
    assert event_count(w) == events
    assert_same_as_reference(w, ref, run_id)
    return run_id


def assert_same_as_reference(w: world_module.World, ref: Reference, run_id: str) -> None:
    assert temp_files(w) == []
    assert files(w) == ref.files
    got = snapshot(w)
    for table, rows in ref.snapshot.items():
        assert got[table] == rows, f"{table}: {len(got[table])} rows, reference {len(rows)}"
    assert got == ref.snapshot
    show = run(w, "show", run_id, "--json").json()
    assert show["status"] == "completed"
    assert [(e["entity"], e["op"], e["records"], e["state"]) for e in show["entries"]] == \
        [(e["entity"], e["op"], e["records"], "done") for e in ref.entries]
    # nothing created twice: per entry, created + skipped covers each planned record once
    for e in show["entries"]:
        assert e["created"] + e["skipped"] == e["records"] and e["failed"] == 0, e
    assert show["applied"]["files"]["copied"] + show["applied"]["files"]["skipped"] == \
        ref.hits("file.after-copy")
    verify = run(w, "journal", "verify")
    assert verify.code == 0, verify.stdout + verify.stderr
    assert runs_of(w)[0]["status"] == "completed"


# -- failpoint sweep -----------------------------------------------------------------------------

def test_sweep_kills_at_twenty_distinct_points_or_more(reference: Reference) -> None:
    killing = {(point, reference.nth(point, n)) for point, n in SWEEP
               if reference.nth(point, n) <= reference.hits(point)}
    assert len(killing) >= 20, sorted(killing)
    assert {point for point, _ in killing} == set(POINTS)


@pytest.mark.parametrize(("point", "n"), SWEEP, ids=[f"{p}:{n}" for p, n in SWEEP])
def test_sigkill_at_failpoint_then_resume_equals_uninterrupted_run(
        tmp_path: Path, reference: Reference, point: str, n: int | str) -> None:
    n = reference.nth(point, n)
    w = world_module.build_world(tmp_path / "w", videos=SWEEP_VIDEOS, seed=SEED)
    initial = snapshot(w)
    killed = run_process(w, *TRANSFER, env={"SYNCD_FAILPOINT": f"{point}:{n}",
                                            "SYNCD_GROUP_RECORDS": str(SWEEP_GROUP_RECORDS)})
    if n <= reference.hits(point):
        assert killed.code == -signal.SIGKILL, (killed.code, killed.stderr)
        assert killed.stdout == ""  # died before printing its result
        assert runs_of(w)[0]["status"] != "completed"
        if point == "plan.after-append":  # before the seal's append: cut off while planning
            [row] = runs_of(w)
            sealed = n == reference.hits(point)
            assert (row["status"], row["sealed_at"] is not None) == \
                (("planned", True) if sealed else ("planning", False)), row
    else:  # the point is not reached that often: the run completes untouched
        assert killed.code == 0, killed.stderr
        assert killed.json()["status"] == "completed"
    run_id = resume_and_check(w, reference, initial)
    if point.startswith("apply.") and n <= reference.hits(point):
        # entry n was in flight when the process died. Even when its effect landed and its
        # outcome was lost (apply.after-effect), resume finds exactly the planned content
        # and the journal says what a clean run says: each record created once, by this run.
        entries = run(w, "show", run_id, "--json").json()["entries"]
        for e, clean in zip(entries, reference.entries, strict=True):
            assert (e["created"], e["skipped"]) == (clean["created"], clean["skipped"]), e


def test_failpoint_before_commit_leaves_no_partial_entry(tmp_path: Path,
                                                         reference: Reference) -> None:
    """Killed inside the second target transaction (devices, after collectors): it rolls
    back entirely."""
    w = world_module.build_world(tmp_path / "w", videos=SWEEP_VIDEOS, seed=SEED)
    before = initial = snapshot(w)
    killed = run_process(w, *TRANSFER, env={"SYNCD_FAILPOINT": "store.before-commit:2"})
    assert killed.code == -signal.SIGKILL
    after = snapshot(w)
    # collectors committed, devices died with its transaction open
    assert len(after["collectors"]) == len(before["collectors"]) + 2
    assert after["devices"] == before["devices"]
    assert after["videos"] == []
    entries = run(w, "show", runs_of(w)[0]["run_id"], "--json").json()["entries"]
    done = [e for e in entries if e["state"] == "done"]
    assert entries[:len(done)] == done  # done in plan order, then only pending ones
    assert {e["state"] for e in entries[len(done):]} == {"pending"}
    assert [e["entity"] for e in done if e["op"] in WRITES] == ["collectors"]
    assert [e["entity"] for e in entries[len(done):] if e["op"] in WRITES][0] == "devices"
    resume_and_check(w, reference, initial)


# -- real signals from outside ------------------------------------------------------------------
# Each test proves its signal landed: a SIGKILLed process dies of it (exit -9, no result), a
# SIGTERMed one is frozen (SIGSTOP) while the journal shows where the signal finds it. A run
# that finished before the signal tests nothing, so it fails the test.

def start_transfer(w: world_module.World) -> subprocess.Popen[str]:
    return subprocess.Popen([str(SYNCD), "--config", str(w.config), *TRANSFER],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SYNCD_FAILPOINT": ""})


def wait_for_status(w: world_module.World, proc: subprocess.Popen[str], status: str,
                    timeout: float = 30) -> bool:
    """Poll the journal until the run reaches `status`; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if w.root.joinpath("journal.db").exists():
            found = runs_of(w)
            if found and found[0]["status"] == status:
                return True
        time.sleep(0.005)
    raise AssertionError(f"run never reached {status!r}")


def freeze(proc: subprocess.Popen[str], timeout: float = 10) -> None:
    """SIGSTOP the process and wait until the kernel shows it stopped."""
    proc.send_signal(signal.SIGSTOP)
    stat = Path(f"/proc/{proc.pid}/stat")
    deadline = time.monotonic() + timeout
    while stat.read_text().rpartition(")")[2].split()[0] not in ("T", "t"):
        assert proc.poll() is None, "the process ended before it could be stopped"
        assert time.monotonic() < deadline, "the process never stopped"
        time.sleep(0.001)


def finish(proc: subprocess.Popen[str]) -> Result:
    stdout, stderr = proc.communicate(timeout=60)
    return Result(proc.returncode, stdout, stderr)


@pytest.mark.parametrize("when", ["after-0.3s", "while-applying"])
def test_external_sigkill_then_resume_equals_uninterrupted_run(
        tmp_path: Path, big_reference: Reference, when: str) -> None:
    w = world_module.build_world(tmp_path / "w", videos=SIGNAL_VIDEOS, seed=SEED)
    initial = snapshot(w)
    proc = start_transfer(w)
    if when == "after-0.3s":
        time.sleep(0.3)
    else:
        assert wait_for_status(w, proc, "applying"), "the run ended before it was seen applying"
    proc.send_signal(signal.SIGKILL)
    result = finish(proc)
    # the signal landed: the process died of it before it could finish the run
    assert result.code == -signal.SIGKILL, (result.code, result.stderr)
    assert result.stdout == ""
    assert all(r["status"] != "completed" for r in runs_of(w))
    if when == "while-applying":
        assert runs_of(w)[0]["status"] == "applying"
    resume_and_check(w, big_reference, initial)


def test_sigterm_while_applying_interrupts_then_resume_equals_uninterrupted_run(
        tmp_path: Path, big_reference: Reference) -> None:
    w = world_module.build_world(tmp_path / "w", videos=SIGNAL_VIDEOS, seed=SEED)
    initial = snapshot(w)
    proc = start_transfer(w)
    assert wait_for_status(w, proc, "applying"), "the run ended before it was seen applying"
    freeze(proc)
    try:  # the process cannot move on: the journal shows where SIGTERM will find it
        [row] = runs_of(w)
        at_signal = run(w, "show", row["run_id"], "--json").json()["entries"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
    result = finish(proc)
    # the signal landed while the run was unfinished, with an entry left after the one in
    # flight: the run must stop at an entry boundary, interrupted
    assert row["status"] == "applying" and row["finished_at"] is None, row
    assert sum(e["state"] == "pending" for e in at_signal) >= 2, at_signal
    assert result.code == 143, (result.code, result.stderr)
    assert result.json()["status"] == "interrupted"
    assert "Traceback" not in result.stderr
    assert "syncd resume" in result.stderr
    found = runs_of(w)
    assert found[0]["status"] == "interrupted"
    entries = run(w, "show", found[0]["run_id"], "--json").json()["entries"]
    # the in-flight entry finished and nothing after it began: nothing is half-applied,
    # something is left
    assert {e["state"] for e in entries} <= {"done", "pending"}
    done_before = {e["entry"] for e in at_signal if e["state"] == "done"}
    done_after = {e["entry"] for e in entries if e["state"] == "done"}
    assert done_before <= done_after and len(done_after - done_before) <= 1
    assert any(e["state"] == "pending" for e in entries)
    assert temp_files(w) == []
    resume_and_check(w, big_reference, initial)
