"""copy, transfer and resume: plan → review → apply, with the journal in between."""
from __future__ import annotations

import json
import signal
import sys
from typing import Any, Callable

import anyio
import click
from rich import filesize
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn)

from journal import TODO_STATES, Journal

from .. import adapters, journals
from .. import blobs
from .. import operations as ops
from .. import render
from ..applier import Progress as ApplyProgress
from ..config import Config
from ..errors import InputError, RunStateError
from ..locks import shared
from ..plan import APPLIED_KEYS, PlanSummary, applied_counts
from ..request import RunRequest
from ..render import err, out
from .app import EXIT_FAILED, STOP, cli, config_of, existing_journal


file_workers_option = click.option(
    "--file-workers", type=click.IntRange(1, blobs.MAX_FILE_WORKERS), metavar="N",
    default=blobs.DEFAULT_FILE_WORKERS, show_default=True,
    help="Files checked and copied at once")


def run_options(*first: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every planning command that selects records has (filters, limit, dry run,
    plan only, prompt, output), after the command's own `first` ones."""
    return plan_options(
        *first,
        click.option("-f", "--filter", "filters", multiple=True, metavar="K:OP:V", help="Filter, repeatable (AND)"),
        click.option("-l", "--limit", type=int, help="Max root records"))


def plan_options(*first: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Dry run, plan only, prompt and output, after the command's own `first` options."""
    options = [
        *first,
        click.option("--dry-run", is_flag=True, help="Plan and print; write nothing anywhere"),
        click.option("--plan-only", is_flag=True, help="Journal the plan and stop; `syncd resume RUN` applies it"),
        click.option("-y", "--yes", is_flag=True, help="Do not ask before applying"),
        click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout"),
        click.option("-v", "--verbose", is_flag=True, help="Per-record tables"),
    ]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


sync_options = run_options(
    click.option("-s", "--source", required=True, help="Source environment"),
    click.option("-t", "--target", required=True, help="Target environment"),
    click.option("--clear", multiple=True, metavar="FIELD", help="Null this field on copied records"),
    click.option("--update", is_flag=True, help="Patch existing records whose fields differ"),
    click.option("--queue", is_flag=True, help="With --plan-only: a running `syncd daemon` applies the run"),
    click.option("--workers", is_flag=True,
                 help="`syncd worker` processes apply it, as checkpoints are sealed (Postgres journal)"))


@cli.command()
@sync_options
@click.option("--entity", required=True, help="Entity to copy")
@click.pass_context
def copy(ctx: click.Context, /, **kw: Any) -> None:
    """Copy records and every parent they need (flat: no children, no files)."""
    run_sync(ctx, "copy", kw)


@cli.command()
@sync_options
@click.option("--entity", help="Root entity (default: the one entity that declares children)")
@click.option("--copy-files", is_flag=True, help="Copy referenced files and rewrite their URIs")
@click.option("--target-bucket", metavar="B", help="GCS bucket for copied gs:// files")
@file_workers_option
@click.pass_context
def transfer(ctx: click.Context, /, **kw: Any) -> None:
    """Transfer roots with their children, parents and (optionally) files."""
    run_sync(ctx, "transfer", kw)


@cli.command()
@run_options(
    click.option("-s", "--source", required=True, help="Environment whose records are cloned"),
    click.option("-t", "--target", help="Environment the clones go to (default: the source)"),
    click.option("--entity", required=True, help="Root entity to clone"),
    click.option("--include", multiple=True, metavar="ENTITY",
                 help="A child entity cloned with the roots, repeatable (default: the root's children)"),
    click.option("--set", "assign", multiple=True, metavar="FIELD=VALUE",
                 help="Set a field on the cloned roots, repeatable"),
    click.option("--clear", multiple=True, metavar="FIELD", help="Null this field on the cloned roots"))
@click.pass_context
def clone(ctx: click.Context, /, **kw: Any) -> None:
    """Clone roots and their children as NEW records under new keys (same or another environment)."""
    kw["target"] = kw["target"] or kw["source"]
    run_sync(ctx, "clone", kw | {"update": False, "queue": False})


@cli.command()
@run_options(
    click.option("-e", "--env", required=True, help="The environment whose records move"),
    click.option("--entity", required=True, help="Root entity of the records that move"),
    click.option("--to", required=True, metavar="SCOPE:KEY|SCOPE:new",
                 help="The scope record they move to (e.g. projects:7), or a new one (projects:new)"),
    click.option("--set", "assign", multiple=True, metavar="FIELD=VALUE",
                 help="With SCOPE:new, a field of the new scope record, repeatable"))
@click.pass_context
def move(ctx: click.Context, /, **kw: Any) -> None:
    """Move roots and everything below them to another scope, in one transaction with checks."""
    env = kw.pop("env")
    run_sync(ctx, "move", kw | {"source": env, "target": env, "clear": (), "update": False,
                                "queue": False})


def run_sync(ctx: click.Context, kind: str, kw: dict[str, Any]) -> None:
    config = config_of(ctx)
    request = RunRequest.build(
        kind=kind, source=kw["source"], target=kw["target"], entity=kw["entity"],
        filters=kw["filters"], limit=kw["limit"], clear=kw["clear"],
        copy_files=kw.get("copy_files", False), target_bucket=kw.get("target_bucket"),
        update=kw["update"], queued=kw["queue"], include=kw.get("include", ()),
        set=kw.get("assign", ()), to=kw.get("to"), workers=kw.get("workers", False))
    run_request(config, request, kw)


def run_request(config: Config, request: RunRequest, kw: dict[str, Any], *,
                before_apply: Callable[[], None] = lambda: None) -> str | None:
    """Plan → show → (prompt) → apply: every planning command's flow. The run id once it
    completed; None for a dry run or a plan only. Exits on failure, interruption or decline.
    `before_apply` runs once the person said yes (restore writes its backup there)."""
    if kw["dry_run"] and kw["plan_only"]:
        raise InputError("--dry-run and --plan-only exclude each other")
    queue = kw.get("queue", False)
    if queue and not kw["plan_only"]:
        raise InputError("--queue needs --plan-only (the daemon applies the planned run)")
    if request.workers and not (kw["yes"] or kw["plan_only"] or kw["dry_run"]):
        raise InputError("--workers needs --yes or --plan-only: workers apply each checkpoint as soon "
                         "as it is sealed, before any prompt (review the plan with --dry-run first)")
    workers = kw.get("file_workers", blobs.DEFAULT_FILE_WORKERS)
    # Applied while planned (architecture §7) only when nobody is asked first: a person
    # answering the prompt sees the whole plan before anything is written.
    overlap = kw["yes"] and not (kw["dry_run"] or kw["plan_only"] or request.workers)
    planned, schema, journal = anyio.run(_plan, config, request, kw["dry_run"], kw["verbose"], workers,
                                         overlap)
    title = f"{request.kind.capitalize()} plan: {request.source} → {request.target}"
    show_plan(planned, title, schema, request, kw["verbose"], kw["as_json"])
    if kw["dry_run"] or kw["plan_only"]:
        status = "dry_run" if kw["dry_run"] else "planned"
        if queue:
            err.print(f"Queued run {planned.run_id}; a running `syncd daemon` applies it")
        elif request.workers and kw["plan_only"]:
            err.print(f"Planned run {planned.run_id}; `syncd worker` processes apply it "
                      "(`syncd runs` shows when they are done)")
        elif kw["plan_only"]:
            err.print(f"Planned run {planned.run_id}; apply it with: syncd resume {planned.run_id}")
        emit_result(kw["as_json"], request, planned.run_id, status, planned.summary, None)
        return None
    assert journal is not None and planned.run_id is not None
    nothing_to_do = planned.entries == 0  # still applied: the journal records the run as completed
    proceed_or_exit(planned.run_id, kw["yes"] or nothing_to_do, kw["as_json"], request,
                    planned.summary, journal, new_run=True)
    before_apply()
    if request.workers:
        finish_by_workers(journal, request, planned.run_id, kw["as_json"])
    else:
        finish(config, journal, request, planned.run_id, kw["as_json"], workers, planned.applying)
    return planned.run_id


async def _plan(config: Config, request: RunRequest, dry_run: bool, verbose: bool,
                file_workers: int, overlap: bool) -> tuple[ops.Planned, Any, Journal | None]:
    async with adapters.connect(config, request, dry_run=dry_run) as ctx:  # validates everything first
        ctx.file_workers = file_workers
        if dry_run and (request.kind in ("revert", "delete") or request.labels):
            ctx.journal = journals.journal_for(config, create=False)  # read, never written
        journal = None if dry_run else journals.journal_for(config)
        if request.workers and journal is not None and not shared(journal):
            raise InputError("--workers needs a journal that workers share: set [journal] url = "
                             "\"postgresql://USER@HOST:PORT/DB\" in syncd.toml")
        planned = await ops.plan(ctx, journal, verbose=verbose, stopping=STOP,
                                 overlap=config if overlap else None)
        return planned, ctx.schema, journal


def show_plan(planned: ops.Planned, title: str, schema: Any, request: RunRequest,
              verbose: bool, as_json: bool) -> None:
    console = err if as_json else out
    console.print(render.plan_table(planned.summary, title, schema, request.update or request.kind in (
        "move", "import", "restore", "revert")))
    if planned.summary.move:
        console.print(render.move_table(planned.summary.move))
    if request.copy_files:
        console.print(render.files_line(planned.summary))
    if verbose and planned.actions:
        for table in render.actions_tables(planned.actions):
            console.print(table)


def proceed_or_exit(run_id: str, yes: bool, as_json: bool, request: RunRequest,
                    summary: PlanSummary, journal: Journal, *, new_run: bool) -> None:
    """Ask before applying. Declining a new run cancels it (journaled), so no planned run is
    left behind for `audit` to show as pending; declining a resume leaves the run as it was."""
    if yes:
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C here declines
    try:
        answer = click.confirm("Proceed?", default=False, err=True)
    except click.Abort:
        answer = False
    finally:
        signal.signal(signal.SIGINT, previous)
    if not answer:
        if new_run:
            ops.cancel(journal, run_id, "declined at the prompt")
            err.print(f"Declined. Run {run_id} is cancelled; nothing was applied.")
        else:
            err.print(f"Declined. Run {run_id} stays as it was; `syncd resume {run_id}` applies it.")
        emit_result(as_json, request, run_id, "cancelled" if new_run else "planned", summary, None)
        sys.exit(EXIT_FAILED)


def finish(config: Config, journal: Journal, request: RunRequest, run_id: str, as_json: bool,
           file_workers: int = blobs.DEFAULT_FILE_WORKERS, applying: ops.Applying | None = None) -> None:
    """Apply a sealed run with a progress bar (waiting for the applier process that has
    been applying it, if any), then print the outcome and exit accordingly."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[bytes]}"), TimeElapsedColumn(), console=err,
                  transient=as_json) as bar:
        records, files = bar.add_task("applying", total=None, bytes=""), FilesLine(bar)

        def start(n_records: int, n_files: int) -> None:
            bar.update(records, total=n_records)
            files.start(n_files)

        progress = ApplyProgress(
            on_start=start, on_entry=lambda entity, n: bar.update(records, advance=n, description=entity),
            on_files=files.planned, on_file=files.done)
        result = anyio.run(lambda: ops.apply(config, journal, run_id, stopping=STOP, progress=progress,
                                             file_workers=file_workers, applying=applying))
    report(journal, request, run_id, as_json, result.status, result.failures)


def finish_by_workers(journal: Journal, request: RunRequest, run_id: str, as_json: bool) -> None:
    """Wait for `syncd worker` processes to apply the run, with its progress, then report
    as finish() does. Ctrl-C stops the waiting only: the workers go on."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=as_json) as bar:
        total = sum(e.records for e in journal.entries(run_id) if e.op != "copy")
        records = bar.add_task("waiting for workers", total=total)
        status = anyio.run(lambda: ops.await_workers(
            journal, run_id, lambda entity, n: bar.update(records, advance=n, description=entity), STOP))
    if status is None:
        err.print(f"Stopped waiting. The workers go on applying run {run_id}; `syncd runs` shows it.")
        sys.exit(STOP.exit_code())
    failures = [f"{row.entity} entry {row.entry}: {row.error}"
                for row in journal.entries(run_id, states=("failed",))]
    report(journal, request, run_id, as_json, status, failures)


def report(journal: Journal, request: RunRequest, run_id: str, as_json: bool, status: str,
           failures: list[str]) -> None:
    """The applied table (or JSON) and the closing line; exits by the run's status."""
    run = journal.run(run_id)
    assert run is not None
    applied = applied_counts(journal, run_id)
    if not as_json:
        out.print(render.applied_table(applied))
    for failure in failures:
        err.print(f"[red]failed:[/] {failure}")
    archive = {"archive": run.summary["archive"]} if "archive" in run.summary else {}
    emit_result(as_json, request, run_id, status, PlanSummary.from_json(run.summary), applied,
                run.error, archive)
    if status == "cancelled":  # by `syncd cancel` while workers applied it
        err.print(f"Run {run_id} was cancelled ({run.error}); nothing more of it is applied.")
        sys.exit(EXIT_FAILED)
    if status == "interrupted":
        err.print(f"Interrupted. `syncd resume {run_id}` continues where it stopped.")
        sys.exit(STOP.exit_code())
    if status == "failed":
        err.print(f"Run {run_id} finished with failures; fix the cause and `syncd resume {run_id}`.")
        sys.exit(EXIT_FAILED)
    err.print(f"Run {run_id} completed.")


class FilesLine:
    """The progress bar's "files" line: files done of all the run has left to copy (known
    when applying starts), their bytes, and how many failed."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task: TaskID | None = None
        self.total_bytes = self.done_bytes = self.failed = 0

    def start(self, files: int) -> None:
        if files:
            self.task = self.bar.add_task("files", total=files, bytes="")

    def planned(self, files: int, nbytes: int) -> None:
        self.total_bytes += nbytes  # bytes are known per entry, as each one begins
        self._show(0)

    def done(self, nbytes: int, ok: bool) -> None:
        self.done_bytes += nbytes
        self.failed += not ok
        self._show(1)

    def _show(self, advance: int) -> None:
        if self.task is None:
            return
        failed = f", [red]{self.failed} failed[/]" if self.failed else ""
        self.bar.update(self.task, advance=advance, description=f"files{failed}",
                        bytes=f"{filesize.decimal(self.done_bytes)} / {filesize.decimal(self.total_bytes)}")


def emit_result(as_json: bool, request: RunRequest, run_id: str | None, status: str,
                summary: PlanSummary, applied: dict[str, Any] | None, error: str | None = None,
                extra: dict[str, Any] | None = None) -> None:
    """The run's JSON; `error` as in `runs --json` (null unless the run failed or stopped)."""
    if not as_json:
        return
    plan = summary.to_json()
    del plan["order"]
    applied = applied or {"entities": {}, "files": {"copied": 0, "skipped": 0, "failed": 0}}
    for name in summary.entities:  # every planned entity appears, in dependency order
        applied["entities"].setdefault(name, dict.fromkeys(APPLIED_KEYS, 0))
    applied["entities"] = {k: applied["entities"][k] for k in summary.entities} | applied["entities"]
    print(json.dumps({
        "run_id": run_id, "kind": request.kind, "source": request.source, "target": request.target,
        "status": status, "error": error, "dry_run": status == "dry_run", "plan": plan,
        "applied": applied, **(extra or {}),
    }))


@cli.command()
@click.argument("run")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before applying")
@click.option("--json", "as_json", is_flag=True)
@file_workers_option
@click.pass_context
def resume(ctx: click.Context, run: str, yes: bool, as_json: bool, file_workers: int) -> None:
    """Apply what RUN has not applied yet."""
    config = config_of(ctx)
    journal = journals.journal_for(config, create=False)
    run_id = journal.resolve_run(run)
    row = journal.run(run_id)
    assert row is not None
    request = RunRequest.from_options(row.options)
    if row.status == "cancelled":
        raise RunStateError(f"run {run_id} was cancelled ({row.error}); it cannot be resumed")
    if row.status == "completed":
        if anyio.run(ops.finish_export, config, journal, run_id):  # died writing its zip
            err.print(f"Run {run_id}: its archive is written now.")
        err.print(f"Run {run_id} is already completed; nothing to do.")
        emit_result(as_json, request, run_id, "completed", PlanSummary.from_json(row.summary),
                    applied_counts(journal, run_id))
        return
    if request.workers:
        resume_by_workers(config, journal, request, row, as_json)
        return
    applying = None
    if row.sealed_at is None:
        err.print(f"Run {run_id} was cut off while planning; planning it on from "
                  + (f"its checkpoint (entry {row.checkpoint})." if row.checkpoint else "the start."))
        applying = anyio.run(lambda: ops.replan(config, journal, run_id, stopping=STOP,
                                                file_workers=file_workers, overlap=yes)).applying
        row = journal.run(run_id)
        assert row is not None
    left = list(journal.entries(run_id, states=TODO_STATES))
    summary = PlanSummary.from_json(row.summary)
    (err if as_json else out).print(render.plan_table(
        summary, f"Resume {run_id}: {row.source} → {row.target}", None, request.update))
    err.print(f"{len(left)} entries ({sum(e.records for e in left)} records) left to apply.")
    proceed_or_exit(run_id, yes, as_json, request, summary, journal, new_run=False)
    finish(config, journal, request, run_id, as_json, file_workers, applying)


def resume_by_workers(config: Config, journal: Journal, request: RunRequest, row: Any, as_json: bool) -> None:
    """A run planned with --workers is resumed by its workers: planned on here if cut off,
    handed back to them, then waited for."""
    if row.sealed_at is None:
        err.print(f"Run {row.run} was cut off while planning; planning it on, for the workers.")
    anyio.run(lambda: ops.hand_to_workers(config, journal, row.run, stopping=STOP))
    err.print(f"Run {row.run} is handed to the workers; waiting for them.")
    finish_by_workers(journal, request, row.run, as_json)


@cli.command()
@click.argument("run")
@click.option("--reason", default="cancelled by hand", show_default=True, help="Journaled with the run")
@click.pass_context
def cancel(ctx: click.Context, run: str, reason: str) -> None:
    """Abandon RUN: it is never applied further (what it applied stays)."""
    journal = existing_journal(ctx)
    run_id = journal.resolve_run(run)
    ops.cancel(journal, run_id, reason)
    err.print(f"Run {run_id} is cancelled.")
