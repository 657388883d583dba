"""What the journal says about each job: last run, last success, mark, next due.

Shared by `/status` and `syncd jobs`, so both always show the same thing. A job's runs are
the runs whose RunStarted options name it; nothing about jobs is kept outside the journal,
so a restarted daemon, or another process, sees exactly the same state.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from journal import UNFINISHED, Journal, MarkRow, RunRow, RunStatus

from .jobs import Job
from .schedule import Every, next_due, parse_time


def latest_run(journal: Journal | None, job: str) -> RunRow | None:
    found = journal.runs(option=("job", job), limit=1) if journal else []
    return found[0] if found else None


def last_success(journal: Journal | None, job: str) -> RunRow | None:
    found = journal.runs(option=("job", job), statuses=["completed"], limit=1) if journal else []
    return found[0] if found else None


def queued_runs(journal: Journal | None, statuses: tuple[RunStatus, ...]) -> list[RunRow]:
    """Runs planned with `--queue` in these states, oldest first (applied in that order)."""
    found = journal.runs(option=("queued", True), statuses=statuses) if journal else []
    return found[::-1]


def schedule_anchor(run: RunRow | None) -> datetime | None:
    """Where the schedule counts from: a completed run's start, or the end of an unfinished
    run's last attempt, so a run that keeps failing is retried once per interval, not in a
    tight loop."""
    if run is None:
        return None
    if run.status != "completed" and run.finished_at:
        return parse_time(run.finished_at)
    return parse_time(run.started_at)


def due_at(job: Job, run: RunRow | None, since: datetime) -> datetime:
    return next_due(job.schedule, schedule_anchor(run), since)


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_view(journal: Journal | None, job: Job, since: datetime, running: bool) -> dict[str, Any]:
    """One job as `/status` and `syncd jobs --json` show it. `next_due` is null when the job
    never ran and runs at once (an `every` job)."""
    c, last = job.config, latest_run(journal, job.name)
    mark = journal.marks().get(job.name) if journal else None
    never_ran_every = last is None and isinstance(job.schedule, Every)
    return {
        "name": job.name, "kind": c.kind, "source": c.source, "target": c.target,
        "entity": c.entity, "schedule": job.schedule.describe(), "incremental": c.incremental,
        "running": running,
        "last_run": _brief(last),
        "last_success": _brief(last_success(journal, job.name)),
        "next_due": None if never_ran_every else iso(due_at(job, last, since)),
        "mark": _mark(mark),
    }


def queued_view(journal: Journal | None) -> list[dict[str, Any]]:
    waiting = queued_runs(journal, UNFINISHED)
    return [{"run_id": r.run, "status": r.status, "kind": r.kind, "source": r.source,
             "target": r.target, "started_at": r.started_at} for r in waiting]


def _brief(run: RunRow | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"run_id": run.run, "status": run.status, "started_at": run.started_at,
            "finished_at": run.finished_at, "counts": run.counts}


def _mark(mark: MarkRow | None) -> dict[str, Any] | None:
    if mark is None:
        return None
    return {"column": mark.column, "value": mark.value, "key": mark.key, "run_id": mark.run,
            "at": mark.at}
