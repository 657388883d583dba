"""Job definitions and the `syncd jobs` commands, in-process (the daemon process: test_daemon_process.py).

A bad job definition stops `syncd daemon` at start: one line naming the key, exit 2, and
nothing written (not even the journal).
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

import world as world_module
from conftest import checkpoint_every, run, run_process, snapshot
from daemon_support import INTERNAL, add_job, ids
from syncd.locks import job_lock

JOB = {"kind": "transfer", "source": "prod", "target": "dev", "entity": "videos",
       "filters": ["collection_meta.data_source:eq:internal"], "copy_files": True, "limit": 5,
       "every": "15m", "incremental": "created_at"}


@pytest.fixture
def w(tmp_path: Path) -> world_module.World:
    return world_module.build_world(tmp_path / "w", videos=12)


def nothing_written(w: world_module.World, before: dict[str, list[tuple]]) -> bool:
    return not (w.root / "journal.db").exists() and snapshot(w) == before


@pytest.mark.parametrize(("change", "key", "words"), [
    ({"colour": "blue"}, "jobs.staging", "unknown key 'colour'"),
    ({"every": "15 minutes"}, "jobs.staging.every", "not a duration"),
    ({"every": None, "cron": "0 25 * * *"}, "jobs.staging.cron", "not a valid cron expression"),
    ({"cron": "0 3 * * *"}, "jobs.staging.every", "not both"),
    ({"every": None}, "jobs.staging.every", "give every"),
    ({"every": None, "cron": "0 3 * * *", "timezone": "Nowhere/Else"}, "jobs.staging.timezone", "unknown time zone"),
    ({"source": "prd"}, "jobs.staging.source", "unknown environment 'prd'"),
    ({"target": "prod"}, "jobs.staging.target", "same environment"),
    ({"kind": "merge"}, "jobs.staging.kind", "Invalid enum value 'merge'"),
    ({"kind": "move", "to": "projects:new"}, "jobs.staging.kind", "the other kinds are run by hand"),
    ({"kind": "copy"}, "jobs.staging.copy_files", "only transfer, export, import and restore copy files"),
    ({"limit": 0}, "jobs.staging.limit", "1 or more"),
    ({"entity": "vidoes"}, "jobs.staging.entity", "unknown entity 'vidoes'"),
    ({"filters": ["colour:eq:blue"]}, "jobs.staging.filters", "unknown field 'colour'"),
    ({"filters": ["title:near:x"]}, "jobs.staging.filters", "near"),
    ({"incremental": "created"}, "jobs.staging.incremental", "no column 'created'"),
    ({"clear": ["nope"]}, "jobs.staging.clear", "unknown field 'nope'"),
    ({"limit": "many"}, "jobs.staging.limit", "got `str`"),
])
def test_a_bad_job_definition_stops_the_daemon_at_start(w: world_module.World, change: dict[str, Any],
                                                       key: str, words: str) -> None:
    add_job(w, **(JOB | change))
    before = snapshot(w)
    result = run(w, "daemon", "--once")
    assert result.code == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and key in line and words in line, line
    assert "Traceback" not in result.stderr
    assert nothing_written(w, before)


def test_a_bad_job_definition_is_exit_2_from_a_real_process(w: world_module.World) -> None:
    add_job(w, **(JOB | {"every": "soon"}))
    before = snapshot(w)
    result = run_process(w, "daemon", "--status-addr", "127.0.0.1:0")
    assert result.code == 2
    assert result.stderr.startswith("syncd: error: jobs.staging.every: ") and result.stderr.count("\n") == 1
    assert nothing_written(w, before)


def test_a_bad_status_address_is_exit_2(w: world_module.World) -> None:
    add_job(w, **JOB)
    result = run(w, "daemon", "--once", "--status-addr", "localhost")
    assert result.code == 2 and "--status-addr 'localhost': expected HOST:PORT" in result.stderr


def test_jobs_lists_jobs_with_their_last_and_next_runs(w: world_module.World) -> None:
    add_job(w, **JOB)
    add_job(w, "nightly", **(JOB | {"every": None, "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                                    "incremental": None, "limit": None}))
    listed = run(w, "jobs", "--json")
    assert listed.code == 0, listed.stderr
    before = {j["name"]: j for j in listed.json()["jobs"]}
    assert before["staging"]["last_run"] is None and before["staging"]["next_due"] is None  # due now
    assert before["staging"]["schedule"] == "every 15m" and before["staging"]["mark"] is None
    assert before["nightly"]["schedule"] == "cron 0 3 * * * (Europe/Berlin)"
    assert before["nightly"]["next_due"] is not None
    assert sorted(p.name for p in w.root.iterdir()) == sorted(p.name for p in w.paths())  # listing writes nothing

    ran = run(w, "jobs", "run", "staging", "--json")
    assert ran.code == 0, ran.stderr
    first = ran.json()["runs"]
    assert [r["status"] for r in first] == ["completed"]
    internal = ids(w.prod_db, INTERNAL)
    assert first[0]["plan"]["entities"]["videos"]["selected"] == 5
    assert first[0]["plan"]["mark"]["value"] is not None

    after = {j["name"]: j for j in run(w, "jobs", "--json").json()["jobs"]}
    staging = after["staging"]
    assert staging["last_run"]["run_id"] == staging["last_success"]["run_id"] == first[0]["run_id"]
    assert staging["last_run"]["status"] == "completed" and staging["running"] is False
    assert staging["mark"]["key"] == internal[4] and staging["mark"]["column"] == "created_at"
    assert staging["next_due"] > staging["last_run"]["started_at"]
    table = run(w, "jobs")
    assert table.code == 0 and "staging" in table.stdout and "every 15m" in table.stdout


@pytest.mark.parametrize("roots", [None, 2], ids=["one-group", "checkpoints-applied-while-planned"])
def test_jobs_run_selects_only_past_the_mark_until_everything_is_copied(
        w: world_module.World, roots: int | None) -> None:
    with checkpoint_every(roots) if roots else nullcontext():
        jobs_run_until_everything_is_copied(w)


def jobs_run_until_everything_is_copied(w: world_module.World) -> None:
    add_job(w, **JOB)
    internal = ids(w.prod_db, INTERNAL)
    selected = []
    for _ in range(len(internal) // 5 + 2):
        result = run(w, "jobs", "run", "staging", "--json")
        assert result.code == 0, result.stderr
        selected.append(result.json()["runs"][0]["plan"]["entities"]["videos"]["selected"])
    full, rest = divmod(len(internal), 5)
    assert selected == [5] * full + [rest] + [0] * (len(selected) - full - 1)
    assert sorted(ids(w.dev_db, "SELECT id FROM videos")) == sorted(internal)
    world_module.add_videos(w, 8, seed=1)
    new = [v for v in ids(w.prod_db, INTERNAL) if v not in internal]
    result = run(w, "jobs", "run", "staging", "--json").json()["runs"][0]
    assert result["plan"]["entities"]["videos"]["selected"] == min(5, len(new)) > 0
    assert run(w, "journal", "verify").code == 0


def test_jobs_run_refuses_an_unknown_job_and_a_job_running_elsewhere(w: world_module.World) -> None:
    add_job(w, **JOB)
    unknown = run(w, "jobs", "run", "nope")
    assert unknown.code == 2 and "unknown job 'nope' (known: staging)" in unknown.stderr
    lock = job_lock(w.root / "journal.db", "staging")
    assert lock.acquire()
    try:
        busy = run(w, "jobs", "run", "staging")
        assert busy.code == 2 and "is running in another process" in busy.stderr
        assert run(w, "jobs", "--json").json()["jobs"][0]["running"] is True
    finally:
        lock.release()
    assert run(w, "jobs", "--json").json()["jobs"][0]["running"] is False


def test_queue_needs_plan_only(w: world_module.World) -> None:
    result = run(w, "transfer", "-s", "prod", "-t", "dev", "--queue", "--yes")
    assert result.code == 2 and "--queue needs --plan-only" in result.stderr
    assert not (w.root / "journal.db").exists()


def test_plan_only_queue_journals_a_queued_run(w: world_module.World) -> None:
    result = run(w, "transfer", "-s", "prod", "-t", "dev", "--plan-only", "--queue", "--json")
    assert result.code == 0, result.stderr
    assert "a running `syncd daemon` applies it" in result.stderr
    runs = json.loads(run(w, "runs", "--json").stdout)
    assert runs[0]["status"] == "planned" and runs[0]["options"]["queued"] is True
    assert snapshot(w)["videos"] == []  # nothing applied yet
    # `syncd daemon --once` applies it (and there are no jobs)
    daemon = run(w, "daemon", "--once")
    assert daemon.code == 0, daemon.stderr
    assert json.loads(run(w, "runs", "--json").stdout)[0]["status"] == "completed"
    assert len(snapshot(w)["videos"]) == 12
