"""`syncd daemon` and `syncd jobs`: scheduled jobs (issue 5).

The daemon package needs the `daemon` extra (cronsim, prometheus-client), so it is imported
inside the commands: the rest of the CLI works without it.
"""
from __future__ import annotations

import json
import sys
from typing import Any


import anyio
import click

from .. import journals
from .. import operations as ops
from .. import render
from ..errors import InputError
from ..locks import job_lock
from ..plan import PlanSummary, applied_counts
from ..render import err, out
from .app import EXIT_FAILED, STOP, cli, config_of


def _need_daemon_extra() -> None:
    """The daemon modules, imported below inside each command, need the `daemon` extra."""
    try:
        import syncd.daemon.runner  # noqa: F401  (imports every third-party module it needs)
    except ImportError as exc:
        raise InputError(f"the daemon needs the daemon extra: pip install 'syncd[daemon]' ({exc})") from None


@cli.command()
@click.option("--once", is_flag=True,
              help="Resume unfinished runs, run the jobs that are due and the queued runs, then exit")
@click.option("--status-addr", metavar="HOST:PORT", help="Serve /healthz, /status and /metrics here")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines on stderr as text or as JSON objects")
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="On SIGTERM/SIGINT, how long the entries in flight may take before their runs "
                   "are recorded as interrupted")
@click.pass_context
def daemon(ctx: click.Context, once: bool, status_addr: str | None, log_format: str, grace: float) -> None:
    """Run the jobs of syncd.toml on their schedules, and runs queued with --queue."""
    _need_daemon_extra()
    from ..daemon import runner
    sys.exit(runner.main(config_of(ctx), once=once, status_addr=status_addr,
                                 log_format=log_format, grace=grace, stopped_before=STOP))


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout")
@click.pass_context
def jobs(ctx: click.Context, as_json: bool) -> None:
    """The jobs of syncd.toml with their last and next runs; `jobs run NAME` runs one now."""
    if ctx.invoked_subcommand is not None:
        return
    _need_daemon_extra()
    from ..daemon import jobs as daemon_jobs, schedule, status
    config = config_of(ctx)
    defined = daemon_jobs.load_jobs(config)
    journal = journals.journal_for(config) if journals.journal_exists(config) else None
    since = schedule.utcnow()
    where = journal if journal is not None else journals.journal_path(config)  # locks, even with no journal yet
    views = [status.job_view(journal, job, since, job_lock(where, job.name).held_elsewhere())
             for job in defined]
    if as_json:
        print(json.dumps({"jobs": views}))
        return
    if not views:
        out.print("No jobs: syncd.toml has no [jobs.NAME] section (see the README's daemon section).",
                  markup=False)
        return
    out.print(render.simple_table("Jobs", ["Job", "Kind", "Source → target", "Schedule", "Last run",
                                           "Status", "Last success", "Next due", "Mark"],
                                  [_job_row(v) for v in views]))


def _job_row(view: dict[str, Any]) -> list[Any]:
    last, success, mark = view["last_run"], view["last_success"], view["mark"]
    return [view["name"], view["kind"], f"{view['source']} → {view['target']}", view["schedule"],
            last and last["run_id"], "running" if view["running"] else last and last["status"],
            success and render.short_time(success["finished_at"]),
            render.short_time(view["next_due"]) or "now",
            mark and f"{mark['column']} > {mark['value']}"]


@jobs.command("run")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def run_job(ctx: click.Context, name: str, as_json: bool, log_format: str) -> None:
    """Run job NAME now: resume its unfinished run if it has one, then run it anew."""
    _need_daemon_extra()
    from ..daemon import jobs as daemon_jobs, logs, turn
    config = config_of(ctx)
    job = daemon_jobs.find_job(daemon_jobs.load_jobs(config), name)
    anyio.run(daemon_jobs.check_job, config, job)
    with journals.journal_for(config) as journal, job_lock(journal, name) as lock:
        if not lock.acquire():
            raise InputError(f"job {name!r} is running in another process (pid {lock.holder()})")
        log = logs.setup(log_format)
        done = anyio.run(lambda: turn.take_turn(
            config, journal, job, log=log, due=lambda last: True, stopping=STOP))
        _report(journal, name, done, as_json)
    statuses = {status for _, status in done}
    if "interrupted" in statuses:
        sys.exit(STOP.exit_code())
    if statuses - {"completed"}:
        sys.exit(EXIT_FAILED)


def _report(journal: Any, name: str, done: list[tuple[str, str]], as_json: bool) -> None:
    runs = []
    for run_id, status in done:
        row = journal.run(run_id)
        summary = PlanSummary.from_json(row.summary)
        applied = applied_counts(journal, run_id)
        runs.append({"run_id": run_id, "status": status, "plan": row.summary, "applied": applied})
        if not as_json:
            out.print(render.plan_table(summary, f"Job {name}: run {run_id}", None,
                                        bool(row.options.get("update"))))
            out.print(render.applied_table(applied))
        err.print(f"Run {run_id} {status}.")
    if as_json:
        print(json.dumps({"job": name, "runs": runs}))
