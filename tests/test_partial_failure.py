"""Partial failure (architecture §6): a batch that fails for good stops further batches of that entity
and of entities that depend on it; what was created stays; file copy failures warn and do not
stop records; `resume` retries what failed and ends equal to an uninterrupted run.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import world as world_module
from conftest import Result, files, run, run_process, snapshot
from journal import ApplyStarted, EntryApplied, open_journal
from syncd.planner import BATCH

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--yes", "--json")
WITH_FILES = (*TRANSFER, "--copy-files")
SEED = 7
VIDEOS = 20
RECORD_ENTITIES = ["collectors", "devices", "locations", "vendors", "videos", "annotation_runs",
                   "segmentations", "video_steps"]


@dataclass
class Reference:
    snapshot: dict[str, list[tuple]]
    files: dict[str, str]
    output: dict[str, Any]


def clean_run(root: Path, args: tuple[str, ...], **world: Any) -> Reference:
    w = world_module.build_world(root, seed=SEED, **world)
    result = run(w, *args)
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "completed"
    return Reference(snapshot(w), files(w), result.json())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return clean_run(tmp_path_factory.mktemp("reference") / "w", WITH_FILES, videos=VIDEOS)


def add_trigger(db: Path, name: str, table: str, when: str | None = None) -> None:
    condition = f" WHEN {when}" if when else ""
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TRIGGER {name} BEFORE INSERT ON {table}{condition} "
                     "BEGIN SELECT RAISE(ABORT, 'rejected by policy'); END")
    conn.close()


def drop_trigger(db: Path, name: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TRIGGER {name}")
    conn.close()


def runs_of(w: world_module.World) -> list[dict[str, Any]]:
    result = run(w, "runs", "--json")
    assert result.code == 0, result.stderr
    return result.json()


def show(w: world_module.World, run_id: str) -> dict[str, Any]:
    result = run(w, "show", run_id, "--json")
    assert result.code == 0, result.stderr
    return result.json()


def assert_clean_failure(result: Result, *needles: str) -> dict[str, Any]:
    """Exit 1, status failed, each cause named on one line (or a few), no traceback."""
    assert result.code == 1, result.stderr
    output = result.json()
    assert output["status"] == "failed"
    assert "Traceback" not in result.stderr
    for needle in needles:
        lines = [line for line in result.stderr.splitlines() if needle in line]
        assert 1 <= len(lines) <= 3, (needle, result.stderr)
    assert f"syncd resume {output['run_id']}" in result.stderr
    return output


def resume(w: world_module.World, run_id: str) -> Result:
    """`syncd resume`, which must apply exactly the failed and pending entries: a done entry
    applied again is a bug even when, being idempotent, it changes nothing."""
    left = [e["entry"] for e in show(w, run_id)["entries"] if e["state"] != "done"]
    assert left
    journal = open_journal(w.root / "journal.db")
    seen = journal.last_seq()
    resumed = run_process(w, "resume", run_id, "--yes", "--json")
    assert resumed.code == 0, resumed.stderr
    events = [r.event for r in journal.read(after=seen, run=run_id)]
    assert sum(isinstance(e, ApplyStarted) for e in events) == 1
    assert [e.entry for e in events if isinstance(e, EntryApplied)] == left
    return resumed


def resume_to_reference(w: world_module.World, run_id: str, ref: Reference) -> None:
    resumed = resume(w, run_id)
    output = resumed.json()
    assert output["status"] == "completed"
    assert snapshot(w) == ref.snapshot
    assert files(w) == ref.files
    assert runs_of(w)[0]["status"] == "completed"
    # the resumed run's totals are those of a clean run: every failure was retried
    assert output["applied"] == ref.output["applied"]
    assert all(e["state"] == "done" for e in show(w, run_id)["entries"])
    verify = run(w, "journal", "verify")
    assert verify.code == 0, verify.stdout + verify.stderr


def ref_applied(ref: Reference, entity: str) -> dict[str, int]:
    return ref.output["applied"]["entities"][entity]


def table_counts(w: world_module.World) -> dict[str, int]:
    return {t: len(rows) for t, rows in snapshot(w).items()}


# -- record failures ----------------------------------------------------------------------------

def test_rejected_batch_fails_the_run_keeps_what_was_created_and_resume_completes_it(
        tmp_path: Path, reference: Reference) -> None:
    w = world_module.build_world(tmp_path / "w", videos=VIDEOS, seed=SEED)
    assert "detect" in world_module.STEP_NAMES[:4]  # one step per video is rejected
    add_trigger(w.dev_db, "no_step", "video_steps", "NEW.step = 'detect'")

    result = run_process(w, *WITH_FILES)
    output = assert_clean_failure(result, "rejected by policy")
    applied = output["applied"]
    n_steps = w.counts["video_steps"]
    # the batch is one transaction: all of it failed, nothing of it landed
    assert applied["entities"]["video_steps"] == {"created": 0, "updated": 0, "deleted": 0, "skipped": 0,
                                                  "failed": n_steps}
    for entity in RECORD_ENTITIES[:-1]:
        assert applied["entities"][entity] == ref_applied(reference, entity), entity
    assert applied["files"] == reference.output["applied"]["files"]
    # what was created before stays, exactly as a clean run writes it
    got = snapshot(w)
    assert got["video_steps"] == []
    for table in RECORD_ENTITIES[:-1]:
        assert got[table] == reference.snapshot[table], table
    assert table_counts(w)["videos"] == VIDEOS
    assert files(w) == reference.files

    [row] = runs_of(w)
    assert row["status"] == "failed"
    assert row["counts"]["failed"] == n_steps
    [failed] = [e for e in show(w, output["run_id"])["entries"] if e["state"] != "done"]
    assert (failed["entity"], failed["state"], failed["failed"]) == ("video_steps", "failed", n_steps)
    assert "rejected by policy" in failed["error"]

    drop_trigger(w.dev_db, "no_step")
    resume_to_reference(w, output["run_id"], reference)


def test_failed_parent_batch_blocks_its_dependents_but_not_other_entities(
        tmp_path: Path, reference: Reference) -> None:
    w = world_module.build_world(tmp_path / "w", videos=VIDEOS, seed=SEED)
    add_trigger(w.dev_db, "no_runs", "annotation_runs")

    result = run_process(w, *WITH_FILES)
    output = assert_clean_failure(result, "rejected by policy")
    states = {e["entity"]: e for e in show(w, output["run_id"])["entries"]}
    assert states["annotation_runs"]["state"] == "failed"
    # segmentations reference annotation_runs: never attempted
    assert states["segmentations"]["state"] == "pending"
    assert output["applied"]["entities"]["segmentations"] == {
        "created": 0, "updated": 0, "deleted": 0, "skipped": 0, "failed": 0}
    # video_steps only reference videos: applied as usual
    assert states["video_steps"]["state"] == "done"
    assert output["applied"]["entities"]["video_steps"] == ref_applied(reference, "video_steps")
    got = snapshot(w)
    assert got["annotation_runs"] == got["segmentations"] == []
    for table in ("videos", "video_steps", "devices", "collectors"):
        assert got[table] == reference.snapshot[table], table
    assert runs_of(w)[0]["status"] == "failed"

    drop_trigger(w.dev_db, "no_runs")
    resume_to_reference(w, output["run_id"], reference)


def test_failed_batch_stops_the_further_batches_of_its_entity(tmp_path: Path) -> None:
    """More video_steps than one entry holds: the first entry fails, the next is not tried."""
    videos = 10
    world = {"videos": videos, "steps_per_video": BATCH // videos + 10, "files": False}
    ref = clean_run(tmp_path / "reference", TRANSFER, **world)
    w = world_module.build_world(tmp_path / "w", seed=SEED, **world)
    add_trigger(w.dev_db, "no_steps", "video_steps")

    result = run_process(w, *TRANSFER)
    output = assert_clean_failure(result, "rejected by policy")
    steps = [e for e in show(w, output["run_id"])["entries"] if e["entity"] == "video_steps"]
    assert len(steps) >= 2
    assert [e["state"] for e in steps] == ["failed"] + ["pending"] * (len(steps) - 1)
    assert output["applied"]["entities"]["video_steps"]["failed"] == steps[0]["records"]
    got = snapshot(w)
    assert got["video_steps"] == []
    assert got["videos"] == ref.snapshot["videos"]
    assert got["segmentations"] == ref.snapshot["segmentations"]

    drop_trigger(w.dev_db, "no_steps")
    resume_to_reference(w, output["run_id"], ref)


# -- file failures ------------------------------------------------------------------------------

def test_missing_source_file_fails_the_run_but_not_the_records(
        tmp_path: Path, reference: Reference) -> None:
    w = world_module.build_world(tmp_path / "w", videos=VIDEOS, seed=SEED)
    assert w.video_ids
    lost = w.prod_files / "videos" / f"{w.video_ids[0]}.mp4"
    content = lost.read_bytes()
    lost.unlink()

    result = run_process(w, *WITH_FILES)
    output = assert_clean_failure(result, lost.name)
    assert "file not found" in result.stderr
    files_applied = output["applied"]["files"]
    n_files = reference.output["applied"]["files"]["copied"]
    assert files_applied == {"copied": n_files - 1, "skipped": 0, "failed": 1}
    # every record was created, exactly as in a clean run (its URI points where the copy goes)
    for entity in RECORD_ENTITIES:
        assert output["applied"]["entities"][entity] == ref_applied(reference, entity), entity
    assert snapshot(w) == reference.snapshot
    missing = {k: v for k, v in reference.files.items() if k != f"videos/{lost.name}"}
    assert files(w) == missing and len(missing) == n_files - 1
    [row] = runs_of(w)
    assert row["status"] == "failed"
    [failed] = [e for e in show(w, output["run_id"])["entries"] if e["state"] != "done"]
    assert (failed["entity"], failed["state"]) == ("files", "failed")

    lost.write_bytes(content)
    resumed = resume(w, output["run_id"])
    assert snapshot(w) == reference.snapshot
    assert files(w) == reference.files
    # the retried entry copies the one file; those its first attempt copied are found with
    # the planned bytes and stay counted as copied by this run: every file once, none skipped
    assert resumed.json()["applied"]["files"] == {"copied": n_files, "skipped": 0, "failed": 0}
    assert runs_of(w)[0]["status"] == "completed"
    assert run(w, "journal", "verify").code == 0
