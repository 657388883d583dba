"""`syncd daemon` as a real process over two SQLite environments (scripts/world.py).

A one-second incremental job picks up records added to prod while it runs; SIGTERM and
SIGKILL mid-run, then a restart, give the target an uninterrupted run gives; `/metrics` and
`/status` agree with the journal and with `syncd jobs`; a second daemon is refused.
Every wait polls for a condition with a deadline: nothing depends on how fast the machine is.
"""
from __future__ import annotations

import signal
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import world as world_module
from conftest import files, run, run_process, snapshot
from daemon_support import (INTERNAL, DaemonProcess, add_job, ids, poll,
                            run_statuses)
from journal import RunRow, SqliteJournal

JOB = {"kind": "transfer", "source": "prod", "target": "dev", "entity": "videos",
       "filters": ["collection_meta.data_source:eq:internal"], "copy_files": True,
       "every": "1h", "incremental": "created_at"}
SEED = 7
SIGNAL_VIDEOS = 150


def job_runs(w: world_module.World, job: str = "staging") -> list[RunRow]:
    """The job's runs, oldest first."""
    with SqliteJournal(w.root / "journal.db") as journal:
        return journal.runs(option=("job", job))[::-1]


def mark_of(w: world_module.World, job: str = "staging") -> tuple[Any, Any, str] | None:
    with SqliteJournal(w.root / "journal.db") as journal:
        mark = journal.marks().get(job)
        return None if mark is None else (mark.value, mark.key, mark.run)


def last_internal(w: world_module.World) -> tuple[str, str]:
    key = ids(w.prod_db, INTERNAL)[-1]
    return ids(w.prod_db, f"SELECT created_at FROM videos WHERE id = '{key}'")[0], key


def dev_videos(w: world_module.World) -> list[str]:
    return sorted(ids(w.dev_db, "SELECT id FROM videos"))


def verify(w: world_module.World) -> None:
    result = run(w, "journal", "verify")
    assert result.code == 0, result.stdout + result.stderr


# -- a one-second incremental job ---------------------------------------------------------------

def test_a_one_second_job_copies_records_added_to_prod_and_selects_only_new_ones(tmp_path: Path) -> None:
    w = world_module.build_world(tmp_path / "w", videos=20)
    add_job(w, **(JOB | {"every": "1s", "limit": 6}))
    daemon = DaemonProcess(w)
    try:
        first = sorted(ids(w.prod_db, INTERNAL))
        poll(lambda: dev_videos(w) == first, what="prod's records in dev")
        world_module.add_videos(w, 8, seed=3)
        everything = sorted(ids(w.prod_db, INTERNAL))
        new = len(everything) - len(first)
        assert new > 0
        poll(lambda: dev_videos(w) == everything, what="the added records in dev")
        poll(lambda: (mark_of(w) or ())[:2] == last_internal(w), what="the mark at the last record")
        # and on it goes, every second, selecting nothing while nothing is new
        poll(lambda: (latest := job_runs(w)[-1]).status == "completed"
             and latest.summary["entities"]["videos"]["selected"] == 0
             and latest.options["after"] == list(last_internal(w)), what="a run with nothing new")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr()
    runs = job_runs(w)
    assert {r.status for r in runs} == {"completed"}
    selected = [r.summary["entities"]["videos"]["selected"] for r in runs]
    # Each record was selected by exactly one run: 6 per run (the limit) until the first
    # records were all in dev, then nothing, then the added ones, then nothing again.
    assert sum(selected) == len(everything)
    full, rest = divmod(len(first), 6)
    nonzero = [n for n in selected if n]
    assert nonzero[:full + bool(rest)] == [6] * full + ([rest] if rest else [])
    assert sum(nonzero[full + bool(rest):]) == new
    # never two runs of the job at once
    for before, after in zip(runs, runs[1:]):
        assert before.finished_at is not None and before.finished_at <= after.started_at
    assert len(daemon.messages("run finished")) >= len(runs) - 1
    assert daemon.messages("daemon stopped")
    verify(w)


# -- SIGTERM / SIGKILL mid-run ------------------------------------------------------------------

@dataclass
class Reference:
    snapshot: dict[str, list[tuple]]
    files: dict[str, str]
    entries: list[tuple[str, str, int]]
    mark: tuple[Any, Any]


def big_world(root: Path) -> world_module.World:
    w = world_module.build_world(root, videos=SIGNAL_VIDEOS, seed=SEED)
    add_job(w, **JOB)
    return w


def entries_of(w: world_module.World, run_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = run(w, "show", run_id, "--json").json()["entries"]
    return entries


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The job run once, uninterrupted (`syncd jobs run`, in-process)."""
    w = big_world(tmp_path_factory.mktemp("reference") / "w")
    result = run(w, "jobs", "run", "staging", "--json")
    assert result.code == 0, result.stderr
    [ran] = result.json()["runs"]
    assert ran["status"] == "completed"
    entries = [(e["entity"], e["op"], e["records"]) for e in entries_of(w, ran["run_id"])]
    assert len(entries) > 5
    mark = mark_of(w)
    assert mark is not None
    return Reference(snapshot(w), files(w), entries, mark[:2])


@pytest.mark.parametrize(("sig", "grace"), [
    (signal.SIGTERM, "30"),  # the entry in flight finishes, the run is journaled as interrupted
    (signal.SIGTERM, "0"),  # no time to wait: interrupted at once, the process leaves
    (signal.SIGKILL, "30"),
], ids=["sigterm", "sigterm-no-grace", "sigkill"])
def test_stopped_mid_run_then_restarted_equals_an_uninterrupted_run(
        tmp_path: Path, reference: Reference, sig: int, grace: str) -> None:
    w = big_world(tmp_path / "w")
    daemon = DaemonProcess(w, "--grace", grace)
    try:
        poll(lambda: "applying" in run_statuses(w).values() or daemon.proc.poll() is not None,
             what="the job's run to start applying")
        code = daemon.stop(sig)
    finally:
        daemon.kill()
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), daemon.stderr()
    [run_row] = job_runs(w)
    if sig == signal.SIGTERM:
        assert daemon.messages("stopping: no new work; runs stop after their entry in flight")
        assert "Traceback" not in daemon.stderr()
        assert run_row.status in ("interrupted", "completed")
        if grace == "0" and run_row.status == "interrupted":  # journaled by the daemon, not the applier
            assert [m["abandoned"] for m in daemon.messages("daemon stopped")] == [[run_row.run]]
            assert run_row.error and "did not finish within 0s" in run_row.error
    restarted = DaemonProcess(w, "--once")
    assert restarted.wait() == 0, restarted.stderr()
    if run_row.status != "completed":
        assert restarted.messages("resuming run")[0]["run"] == run_row.run
    assert [r.status for r in job_runs(w)] == ["completed"]  # the same run, finished; no other
    assert files(w) == reference.files
    assert snapshot(w) == reference.snapshot
    entries = entries_of(w, run_row.run)
    assert [(e["entity"], e["op"], e["records"]) for e in entries] == reference.entries
    for e in entries:  # nothing created twice
        assert e["state"] == "done" and e["created"] + e["skipped"] == e["records"], e
    assert mark_of(w) == (*reference.mark, run_row.run)
    verify(w)


# -- status, metrics, queued runs, one daemon per journal ---------------------------------------

def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).astimezone(timezone.utc).timestamp()


def test_status_and_metrics_match_the_journal_and_queued_runs_are_applied(tmp_path: Path) -> None:
    w = world_module.build_world(tmp_path / "w", videos=16)
    add_job(w, **JOB)
    daemon = DaemonProcess(w, "--status-addr", "127.0.0.1:0")
    try:
        def idle() -> bool:
            [job] = daemon.get_json("/status")["jobs"]
            return job["last_run"] is not None and job["last_run"]["status"] == "completed" and not job["running"]
        poll(idle, what="the job's first run")
        queued = run(w, "transfer", "-s", "prod", "-t", "dev", "--copy-files", "--plan-only", "--queue",
                     "-f", "collection_meta.data_source:eq:partner", "--json")
        assert queued.code == 0, queued.stderr
        queued_id = queued.json()["run_id"]
        poll(lambda: run_statuses(w).get(queued_id) == "completed", what="the daemon to apply the queued run")
        assert daemon.messages("applying queued run")[0]["run"] == queued_id
        assert dev_videos(w) == sorted(ids(w.prod_db, "SELECT id FROM videos"))  # both halves

        assert daemon.get("/healthz") == (200, "ok\n")
        status = daemon.get_json("/status")
        listed = run(w, "jobs", "--json")
        assert listed.code == 0, listed.stderr
        assert status["jobs"] == listed.json()["jobs"]
        assert status["queued"] == [] and status["daemon"]["pid"] == daemon.proc.pid

        code, text = daemon.get("/metrics")
        metrics = samples(text)
        runs = run(w, "runs", "--json").json()
        by_status = Counter(r["status"] for r in runs)
        assert by_status == {"completed": 2}
        for status_name in ("completed", "failed", "interrupted", "planned", "applying", "planning"):
            assert metrics[("syncd_runs", (("status", status_name),))] == by_status[status_name]
        for outcome in ("created", "updated", "skipped", "failed"):
            assert metrics[("syncd_records", (("outcome", outcome),))] == sum(r["counts"][outcome] for r in runs)
        copied = sum((w.dev_files / p).stat().st_size for p in files(w))
        assert copied > 0 and metrics[("syncd_file_bytes_copied_total", ())] == copied
        job_run = next(r for r in runs if r["options"].get("job") == "staging")
        assert metrics[("syncd_job_runs", (("job", "staging"), ("status", "completed")))] == 1
        assert metrics[("syncd_job_last_success_timestamp_seconds", (("job", "staging"),))] == \
            pytest.approx(seconds(job_run["finished_at"]))
        lag = metrics[("syncd_job_lag_seconds", (("job", "staging"),))]
        assert 0 <= lag <= datetime.now(timezone.utc).timestamp() - seconds(job_run["started_at"])
        assert metrics[("syncd_job_next_due_timestamp_seconds", (("job", "staging"),))] == \
            pytest.approx(seconds(job_run["started_at"]) + 3600)
        assert metrics[("syncd_job_running", (("job", "staging"),))] == 0
        assert metrics[("syncd_queued_runs", ())] == 0

        # one daemon per journal: a second one is refused, writes nothing
        with SqliteJournal(w.root / "journal.db") as journal:
            before = journal.last_seq()
        second = run_process(w, "daemon", "--once")
        assert second.code == 2
        assert second.stderr == (f"syncd: error: another syncd daemon (pid {daemon.proc.pid}) is running on "
                                 f"journal {w.root / 'journal.db'}; one daemon per journal\n")
        with SqliteJournal(w.root / "journal.db") as journal:
            assert journal.last_seq() == before
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr()
    verify(w)
