"""Runs that cannot or will not finish: `syncd cancel RUN`, declining at the prompt (the run is
journaled as cancelled and never resumed), and --clear of a NOT NULL column refused up front."""
from __future__ import annotations

from conftest import run, snapshot

COPY = ("copy", "-s", "prod", "-t", "dev", "--entity", "videos", "-l", "3")


def test_cancel_a_planned_run_and_resume_refuses_it(world) -> None:
    before = snapshot(world)
    planned = run(world, *COPY, "--plan-only", "--json")
    assert planned.code == 0, planned.stderr
    run_id = planned.json()["run_id"]
    cancelled = run(world, "cancel", run_id, "--reason", "wrong filter")
    assert cancelled.code == 0, cancelled.stderr
    assert [(r["run_id"], r["status"]) for r in _runs(world)] == [(run_id, "cancelled")]
    resumed = run(world, "resume", run_id, "--yes")
    assert resumed.code == 2
    assert resumed.stderr.strip().splitlines() == [
        f"syncd: error: run {run_id} was cancelled (wrong filter); it cannot be resumed"]
    assert snapshot(world) == before  # nothing applied, ever
    again = run(world, "cancel", run_id)
    assert again.code == 2 and "nothing to cancel" in again.stderr
    assert run(world, "journal", "verify").code == 0


def test_a_completed_run_cannot_be_cancelled(world) -> None:
    done = run(world, *COPY, "--yes", "--json")
    assert done.code == 0
    result = run(world, "cancel", done.json()["run_id"])
    assert result.code == 2 and "completed; there is nothing to cancel" in result.stderr


def test_declining_cancels_the_run_so_audit_shows_nothing_pending(world) -> None:
    before = snapshot(world)
    declined = run(world, *COPY, "--json", input="n\n")
    assert declined.code == 1
    report = declined.json()
    assert report["status"] == "cancelled"
    assert snapshot(world) == before
    status = {r["run_id"]: r["status"] for r in _runs(world)}
    assert status == {report["run_id"]: "cancelled"}
    assert run(world, "resume", report["run_id"], "--yes").code == 2


def _runs(world) -> list[dict]:
    rows: list[dict] = run(world, "runs", "--json").json()
    return rows


def test_audit_shows_a_declined_runs_records_as_cancelled_not_pending(world) -> None:
    declined = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "vendors", "-l", "1", "--json",
                   input="n\n")
    assert declined.code == 1
    shown = run(world, "show", declined.json()["run_id"], "-v", "--json")
    assert shown.code == 0, shown.stderr
    key = shown.json()["records"][0]["key"]
    history = run(world, "audit", key, "--entity", "vendors", "--json").json()["history"]
    assert [h["outcome"] for h in history] == ["cancelled"]
    assert {r["outcome"] for r in shown.json()["records"]} == {"cancelled"}


def test_clear_of_a_not_null_column_is_refused_before_planning(world) -> None:
    before = snapshot(world)
    ok = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "vendors", "--clear", "name", "--dry-run")
    assert ok.code == 2, ok.stderr  # vendors.name is NOT NULL in the target
    assert ok.stderr.strip().splitlines() == [
        "syncd: error: --clear name: environment 'dev' declares vendors.name NOT NULL, "
        "so no record could be written without it"]
    assert snapshot(world) == before
    assert not (world.root / "journal.db").exists()
    nullable = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "devices", "--clear", "model",
                   "--yes")
    assert nullable.code == 0, nullable.stderr
