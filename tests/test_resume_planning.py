"""A run cut off while planning (RunStarted and some checkpoints durable, no seal) is planned
on from its last checkpoint and applied by `syncd resume` and by the daemon's path
(operations.finish_run); the target then equals an uninterrupted run's.

A transfer's plan is appended with a checkpoint after a group of CHUNK roots once
GROUP_RECORDS records are waiting: these tests set groups of 2 roots and SYNCD_GROUP_RECORDS=1,
a durable append per group, so the failpoint plan.after-append:2 kills the planner after its
second checkpoint. SYNCD_OVERLAP=0: nothing is applied before the kill, so the resume applies
every entry (the overlapped windows are tests/test_overlap_crash.py's).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

import world as world_module
from conftest import checkpoint_every, files, run, run_process, snapshot
from journal import ApplyStarted, CheckpointSealed, EntryApplied, EntryPlanned, PlanSealed, RunStarted, open_journal
from syncd import operations as ops
from syncd.config import load_config

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes", "--json")
SEED = 7
VIDEOS = 10
CHUNK_ROOTS = 2
CUT_OFF = {"SYNCD_FAILPOINT": "plan.after-append:2", "SYNCD_GROUP_RECORDS": "1"}


@pytest.fixture(scope="module", autouse=True)
def small_groups() -> Any:
    with checkpoint_every(CHUNK_ROOTS, group_records=None, overlap=False):
        yield


class Reference:
    def __init__(self, w: world_module.World, output: dict[str, Any]) -> None:
        self.snapshot = snapshot(w)
        self.files = files(w)
        show = run(w, "show", output["run_id"], "--json").json()
        self.entries = [(e["entity"], e["op"], e["records"], e["created"], e["skipped"])
                        for e in show["entries"]]
        self.applied = output["applied"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    w = world_module.build_world(tmp_path_factory.mktemp("reference") / "w", videos=VIDEOS, seed=SEED)
    result = run(w, *TRANSFER)
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "completed"
    ref = Reference(w, result.json())
    assert len(ref.entries) > 2 and ref.files
    return ref


def cut_off_while_planning(tmp_path: Path) -> tuple[world_module.World, str]:
    """A transfer SIGKILLed after its plan's second durable append; nothing applied."""
    w = world_module.build_world(tmp_path / "w", videos=VIDEOS, seed=SEED)
    initial = snapshot(w)
    killed = run_process(w, *TRANSFER, env=CUT_OFF)
    assert killed.code == -9, (killed.code, killed.stderr)
    [row] = run(w, "runs", "--json").json()
    assert (row["status"], row["sealed_at"], row["attempts"]) == ("planning", None, 0), row
    events = [r.event for r in open_journal(w.root / "journal.db").read(run=row["run_id"])]
    assert type(events[0]) is RunStarted and type(events[-1]) is CheckpointSealed
    assert sum(type(e) is CheckpointSealed for e in events) == 2
    assert {type(e) for e in events[1:-1]} == {EntryPlanned, CheckpointSealed}
    assert snapshot(w) == initial and files(w) == {}
    return w, row["run_id"]


def check_finished(w: world_module.World, run_id: str, ref: Reference) -> None:
    """Planned again (a sealed plan with every entry), applied whole, equal to the reference."""
    events = [r.event for r in open_journal(w.root / "journal.db").read(run=run_id)]
    assert sum(isinstance(e, PlanSealed) for e in events) == 1
    assert sum(isinstance(e, ApplyStarted) for e in events) == 1
    assert sorted(e.entry for e in events if isinstance(e, EntryApplied)) == \
        list(range(1, len(ref.entries) + 1))
    show = run(w, "show", run_id, "--json").json()
    assert show["status"] == "completed"
    assert [(e["entity"], e["op"], e["records"], e["created"], e["skipped"])
            for e in show["entries"]] == ref.entries
    assert all(e["state"] == "done" for e in show["entries"])
    assert snapshot(w) == ref.snapshot
    assert files(w) == ref.files
    verify = run(w, "journal", "verify")
    assert verify.code == 0, verify.stdout + verify.stderr


def test_resume_plans_a_run_cut_off_while_planning_again(tmp_path: Path, reference: Reference) -> None:
    w, run_id = cut_off_while_planning(tmp_path)
    resumed = run_process(w, "resume", run_id, "--yes", "--json")
    assert resumed.code == 0, resumed.stderr
    assert "cut off while planning; planning it on from its checkpoint" in resumed.stderr
    output = resumed.json()
    assert (output["run_id"], output["status"]) == (run_id, "completed")
    assert output["applied"] == reference.applied
    check_finished(w, run_id, reference)


def test_finish_run_plans_a_run_cut_off_while_planning_again(tmp_path: Path, reference: Reference) -> None:
    """The daemon's path: operations.finish_run, in-process."""
    w, run_id = cut_off_while_planning(tmp_path)
    config = load_config(str(w.config))
    journal = open_journal(w.root / "journal.db")
    assert anyio.run(partial(ops.finish_run, config, journal, run_id)) == "completed"
    check_finished(w, run_id, reference)
