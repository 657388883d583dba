"""What `runs` and `show` print for people (80 columns, skipped counts) and for scripts
(one JSON shape per field, errors, --status and --limit)."""
from __future__ import annotations

import json

from conftest import run, run_process
from test_partial_failure import add_trigger

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--yes", "--json")


def test_runs_at_80_columns_keep_every_run_id_whole(world) -> None:
    ids = [run(world, *TRANSFER, "-l", "2").json()["run_id"] for _ in range(2)]
    result = run_process(world, "runs", env={"COLUMNS": "80"})
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for run_id in ids:
        assert any(line.startswith(run_id + " ") for line in lines), result.stdout
    assert "…" not in result.stdout


def test_runs_show_what_was_already_in_the_target_as_skipped(world) -> None:
    run(world, *TRANSFER, "-l", "2")
    again = run(world, *TRANSFER, "-l", "2").json()  # everything is there already
    planned = sum(e["existing"] for e in again["plan"]["entities"].values())
    assert planned > 0 and sum(e["create"] for e in again["plan"]["entities"].values()) == 0
    rows = {r["run_id"]: r for r in run(world, "runs", "--json").json()}
    assert rows[again["run_id"]]["already_in_target"] == planned
    table = run(world, "runs").stdout
    line = next(line for line in table.splitlines() if line.startswith(again["run_id"]))
    skipped = planned + rows[again["run_id"]]["counts"]["skipped"] - rows[again["run_id"]]["matched"]
    assert f"0 / 0 / {skipped} / 0" in line, table


def test_entries_is_a_count_in_no_command_and_a_list_in_show(world) -> None:
    run_id = run(world, *TRANSFER, "-l", "2").json()["run_id"]
    listed = run(world, "runs", "--json").json()[0]
    shown = run(world, "show", run_id, "--json").json()
    assert "entries" not in listed and isinstance(listed["entry_count"], int)
    assert isinstance(shown["entries"], list) and shown["entry_count"] == len(shown["entries"]) > 0
    shared = set(listed) & set(shown)
    assert {k: type(listed[k]) for k in shared} == {k: type(shown[k]) for k in shared}


def test_a_failed_runs_json_carries_its_error(world) -> None:
    add_trigger(world.dev_db, "no_videos", "videos")
    result = run(world, *TRANSFER, "-l", "2")
    assert result.code == 1
    run_id = result.json()["run_id"]
    for data in (result.json(), run(world, "runs", "--json").json()[0],
                 run(world, "show", run_id, "--json").json()):
        assert data["status"] == "failed" and "rejected by policy" in data["error"]


def test_runs_filtered_by_status_and_limited(world) -> None:
    done = [run(world, *TRANSFER, "-l", "1").json()["run_id"] for _ in range(3)]
    planned = run(world, *TRANSFER, "-l", "1", "--plan-only").json()["run_id"]

    def listed(*args: str) -> list[str]:
        result = run(world, "runs", "--json", *args)
        assert result.code == 0, result.stderr
        return [r["run_id"] for r in result.json()]

    assert listed() == [planned, *reversed(done)]
    assert listed("--status", "completed") == list(reversed(done))
    assert listed("--status", "completed", "--limit", "2") == list(reversed(done))[:2]
    assert listed("--status", "planned", "--status", "completed", "--limit", "1") == [planned]
    assert listed("--limit", "1") == [planned]
    for bad in (["--status", "finished"], ["--limit", "0"]):
        result = run(world, "runs", *bad)
        assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
