"""`syncd` command line: a thin edge that parses input, calls one operation, renders output.

Exit codes: 0 done; 1 finished with failed entries or declined at the prompt; 2 bad input or
config (nothing written); 130/143 interrupted by SIGINT/SIGTERM.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, Callable

import anyio
import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from journal import JournalError, SqliteJournal
from journal.events import EntryPlanned

from . import operations as ops
from . import render
from .applier import Progress as ApplyProgress
from .config import Config, load_config
from .errors import InputError, Interrupted, RunStateError, SyncdError
from .plan import FILES, PlanRequest, PlanSummary
from .render import err, out

EXIT_FAILED, EXIT_INPUT = 1, 2


class Stop:
    """Set by SIGINT/SIGTERM; checked between groups and between entries."""

    signum = 0

    def __call__(self) -> bool:
        return self.signum != 0

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signum = signum
        err.print("[yellow]stopping after the entry in flight (again to force)…[/]")
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


STOP = Stop()


class SyncdGroup(click.Group):
    """Maps every expected error to one line on stderr and an exit code (no tracebacks)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Abort:
            sys.exit(EXIT_FAILED)
        except click.ClickException as exc:
            fail(f"syncd: error: {exc.format_message()}", EXIT_INPUT)
        except (InputError, RunStateError, JournalError) as exc:
            fail(f"syncd: error: {exc}", EXIT_INPUT)
        except Interrupted:
            fail("Interrupted while planning; nothing was applied. `syncd resume RUN` plans again.",
                 STOP.exit_code())
        except SyncdError as exc:
            fail(f"syncd: failed: {exc}", EXIT_FAILED)
        except Exception as exc:  # a bug: one line, the traceback only on request
            if os.environ.get("SYNCD_DEBUG"):
                raise
            fail(f"syncd: internal error: {type(exc).__name__}: {exc} (SYNCD_DEBUG=1 shows more)", 70)


def fail(message: str, code: int) -> None:
    click.echo(message, err=True)  # plain: one line, never wrapped or styled
    sys.exit(code)


@click.group(cls=SyncdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", help="syncd.toml (default: $SYNCD_CONFIG, ./syncd.toml)")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Journaled, resumable, auditable sync of records and files between environments."""
    ctx.obj = config_path


def config_of(ctx: click.Context, *, required: bool = True) -> Config:
    return load_config(ctx.find_root().obj, required=required)


def sync_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("-s", "--source", required=True, help="Source environment"),
        click.option("-t", "--target", required=True, help="Target environment"),
        click.option("-f", "--filter", "filters", multiple=True, metavar="K:OP:V", help="Filter, repeatable (AND)"),
        click.option("-l", "--limit", type=int, help="Max root records"),
        click.option("--clear", multiple=True, metavar="FIELD", help="Null this field on copied records"),
        click.option("--update", is_flag=True, help="Patch existing records whose fields differ"),
        click.option("--dry-run", is_flag=True, help="Plan and print; write nothing anywhere"),
        click.option("--plan-only", is_flag=True, help="Journal the plan and stop; `syncd resume RUN` applies it"),
        click.option("-y", "--yes", is_flag=True, help="Do not ask before applying"),
        click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout"),
        click.option("-v", "--verbose", is_flag=True, help="Per-record tables"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command()
@sync_options
@click.option("--entity", required=True, help="Entity to copy")
@click.pass_context
def copy(ctx: click.Context, **kw: Any) -> None:
    """Copy records and every parent they need (flat: no children, no files)."""
    run_sync(ctx, "copy", kw)


@cli.command()
@sync_options
@click.option("--entity", help="Root entity (default: the one entity that declares children)")
@click.option("--copy-files", is_flag=True, help="Copy referenced files and rewrite their URIs")
@click.option("--target-bucket", metavar="B", help="GCS bucket for copied gs:// files")
@click.pass_context
def transfer(ctx: click.Context, **kw: Any) -> None:
    """Transfer roots with their children, parents and (optionally) files."""
    run_sync(ctx, "transfer", kw)


def run_sync(ctx: click.Context, kind: str, kw: dict[str, Any]) -> None:
    config = config_of(ctx)
    request = PlanRequest(kind=kind, source=kw["source"], target=kw["target"], entity=kw["entity"],
                          filters=kw["filters"], limit=kw["limit"], clear=kw["clear"],
                          copy_files=kw.get("copy_files", False), target_bucket=kw.get("target_bucket"),
                          update=kw["update"])
    if kw["dry_run"] and kw["plan_only"]:
        raise InputError("--dry-run and --plan-only exclude each other")
    planned, schema, journal = anyio.run(_plan, config, request, kw["dry_run"], kw["verbose"])
    title = f"{kind.capitalize()} plan: {request.source} → {request.target}"
    show_plan(planned, title, schema, request, kw["verbose"], kw["as_json"])
    if kw["dry_run"] or kw["plan_only"]:
        status = "dry_run" if kw["dry_run"] else "planned"
        if kw["plan_only"]:
            err.print(f"Planned run {planned.run_id}; apply it with: syncd resume {planned.run_id}")
        emit_result(kw["as_json"], request, planned.run_id, status, planned.summary, None)
        return
    assert journal is not None and planned.run_id is not None
    nothing_to_do = planned.entries == 0  # still applied: the journal records the run as completed
    proceed_or_exit(planned.run_id, kw["yes"] or nothing_to_do, kw["as_json"], request,
                    planned.summary, journal)
    finish(config, journal, planned.run_id, kw["as_json"])


async def _plan(config: Config, request: PlanRequest, dry_run: bool,
                verbose: bool) -> tuple[ops.Planned, Any, SqliteJournal | None]:
    async with ops.connect(config, request) as ctx:  # validates everything first
        journal = None if dry_run else ops.journal_for(config)
        planned = await ops.plan(ctx, journal, verbose=verbose, stopping=STOP)
        return planned, ctx.schema, journal


def show_plan(planned: ops.Planned, title: str, schema: Any, request: PlanRequest,
              verbose: bool, as_json: bool) -> None:
    console = err if as_json else out
    console.print(render.plan_table(planned.summary, title, schema, request.update))
    if request.copy_files:
        console.print(render.files_line(planned.summary))
    if verbose and planned.actions:
        for table in render.actions_tables(planned.actions):
            console.print(table)


def proceed_or_exit(run_id: str, yes: bool, as_json: bool, request: PlanRequest,
                    summary: PlanSummary, journal: SqliteJournal) -> None:
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
        err.print(f"Declined. Run {run_id} stays planned; `syncd resume {run_id}` applies it.")
        emit_result(as_json, request, run_id, "planned", summary, None)
        sys.exit(EXIT_FAILED)


def finish(config: Config, journal: SqliteJournal, run_id: str, as_json: bool) -> None:
    """Apply a sealed run with a progress bar, then print the outcome and exit accordingly."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=as_json) as bar:
        task = bar.add_task("applying", total=None)
        progress = ApplyProgress(
            on_start=lambda total: bar.update(task, total=total),
            on_entry=lambda entity, n: bar.update(task, advance=n, description=entity))
        result = anyio.run(lambda: ops.apply(config, journal, run_id, stopping=STOP, progress=progress))
    run = journal.run(run_id)
    assert run is not None
    request = PlanRequest.from_options(run.options)
    applied = applied_counts(journal, run_id)
    if not as_json:
        out.print(render.applied_table(applied))
    for failure in result.failures:
        err.print(f"[red]failed:[/] {failure}")
    emit_result(as_json, request, run_id, result.status, PlanSummary.from_json(run.summary), applied)
    if result.status == "interrupted":
        err.print(f"Interrupted. `syncd resume {run_id}` continues where it stopped.")
        sys.exit(STOP.exit_code())
    if result.status == "failed":
        err.print(f"Run {run_id} finished with failures; fix the cause and `syncd resume {run_id}`.")
        sys.exit(EXIT_FAILED)
    err.print(f"Run {run_id} completed.")


def applied_counts(journal: SqliteJournal, run_id: str) -> dict[str, Any]:
    entities: dict[str, dict[str, int]] = {}
    files = {"copied": 0, "skipped": 0, "failed": 0}
    for e in journal.entries(run_id):
        if e.entity == FILES:
            files["copied"] += e.created
            files["skipped"] += e.skipped
            files["failed"] += e.failed
            continue
        c = entities.setdefault(e.entity, dict.fromkeys(render.APPLIED_KEYS, 0))
        for k in render.APPLIED_KEYS:
            c[k] += getattr(e, k)
    return {"entities": entities, "files": files}


def emit_result(as_json: bool, request: PlanRequest, run_id: str | None, status: str,
                summary: PlanSummary, applied: dict[str, Any] | None) -> None:
    if not as_json:
        return
    plan = summary.to_json()
    del plan["order"]
    applied = applied or {"entities": {}, "files": {"copied": 0, "skipped": 0, "failed": 0}}
    for name in summary.entities:  # every planned entity appears, in dependency order
        applied["entities"].setdefault(name, dict.fromkeys(render.APPLIED_KEYS, 0))
    applied["entities"] = {k: applied["entities"][k] for k in summary.entities} | applied["entities"]
    print(json.dumps({
        "run_id": run_id, "kind": request.kind, "source": request.source, "target": request.target,
        "status": status, "dry_run": status == "dry_run", "plan": plan,
        "applied": applied,
    }))


@cli.command()
@click.argument("run")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before applying")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def resume(ctx: click.Context, run: str, yes: bool, as_json: bool) -> None:
    """Apply what RUN has not applied yet."""
    config = config_of(ctx)
    journal = ops.journal_for(config, create=False)
    run_id = journal.resolve_run(run)
    row = journal.run(run_id)
    assert row is not None
    request = PlanRequest.from_options(row.options)
    if row.status == "completed":
        err.print(f"Run {run_id} is already completed; nothing to do.")
        emit_result(as_json, request, run_id, "completed", PlanSummary.from_json(row.summary),
                    applied_counts(journal, run_id))
        return
    if row.sealed_at is None:
        err.print(f"Run {run_id} was cut off while planning; planning it again.")
        anyio.run(lambda: ops.replan(config, journal, run_id, stopping=STOP))
        row = journal.run(run_id)
        assert row is not None
    left = [e for e in journal.entries(run_id, states=("pending", "failed"))]
    summary = PlanSummary.from_json(row.summary)
    (err if as_json else out).print(render.plan_table(
        summary, f"Resume {run_id}: {row.source} → {row.target}", None, request.update))
    err.print(f"{len(left)} entries ({sum(e.records for e in left)} records) left to apply.")
    proceed_or_exit(run_id, yes, as_json, request, summary, journal)
    finish(config, journal, run_id, as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs(ctx: click.Context, as_json: bool) -> None:
    """Runs, newest first: id, kind, source → target, status, counts, times."""
    config = config_of(ctx, required=False)
    rows = ops.journal_for(config).runs() if ops.journal_path(config).exists() else []
    if as_json:
        print(json.dumps([_run_json(r) for r in rows]))
        return
    out.print(render.simple_table("Runs", ["Run", "Kind", "Source → target", "Status", "Created",
                                           "Updated", "Skipped", "Failed", "Started", "Finished"], [
        (r.run, r.kind, f"{r.source} → {r.target}", r.status, r.counts.get("created", 0),
         r.counts.get("updated", 0), r.counts.get("skipped", 0), r.counts.get("failed", 0),
         render.short_time(r.started_at), render.short_time(r.finished_at)) for r in rows]))


def _run_json(r: Any) -> dict[str, Any]:
    return {"run_id": r.run, "kind": r.kind, "source": r.source, "target": r.target,
            "status": r.status, "options": r.options, "entries": r.entries, "counts": r.counts,
            "attempts": r.attempts, "started_at": r.started_at, "sealed_at": r.sealed_at,
            "finished_at": r.finished_at}


@cli.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
@click.option("-v", "--verbose", is_flag=True, help="One line per record")
@click.pass_context
def show(ctx: click.Context, run: str, as_json: bool, verbose: bool) -> None:
    """The plan of RUN and its progress per entity (per record with -v)."""
    journal = ops.journal_for(config_of(ctx, required=False), create=False)
    run_id = journal.resolve_run(run)
    row = journal.run(run_id)
    assert row is not None
    entries = list(journal.entries(run_id))
    records = list(_records(journal, run_id, entries)) if verbose else None
    if as_json:
        data = _run_json(row) | {"plan": row.summary, "applied": applied_counts(journal, run_id),
                                 "entries": [_entry_json(e) for e in entries]}
        if records is not None:
            data["records"] = [dict(zip(("entity", "key", "op", "outcome", "hash"), r)) for r in records]
        print(json.dumps(data))
        return
    out.print(f"Run {run_id}: {row.kind} {row.source} → {row.target}, {row.status}")
    out.print(render.plan_table(PlanSummary.from_json(row.summary), "Plan", None,
                                bool(row.options.get("update"))))
    out.print(render.simple_table("Entries", ["#", "Entity", "Op", "Records", "State", "Created",
                                              "Updated", "Skipped", "Failed", "Error"], [
        (e.entry, e.entity, e.op, e.records, e.state, e.created, e.updated, e.skipped, e.failed,
         e.error) for e in entries]))
    if records is not None:
        out.print(render.simple_table("Records", ["Entity", "Key", "Op", "Outcome", "Hash"], records))


def _entry_json(e: Any) -> dict[str, Any]:
    return {k: getattr(e, k) for k in ("entry", "entity", "op", "records", "state", "created",
                                       "updated", "skipped", "failed", "error", "retries")}


def _records(journal: SqliteJournal, run_id: str, entries: list[Any]) -> Any:
    for e in entries:
        planned: EntryPlanned = journal.planned(run_id, e.entry)
        applied = journal.applied(run_id, e.entry)
        outcomes = applied.outcomes if applied else ["pending"] * len(planned.keys)
        for key, digest, outcome in zip(planned.keys, planned.hashes, outcomes):
            yield (planned.entity, key, planned.op, outcome, digest)


@cli.command()
@click.argument("key")
@click.option("--entity", help="Only this entity")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit(ctx: click.Context, key: str, entity: str | None, as_json: bool) -> None:
    """Every journaled operation on the record KEY, oldest first."""
    journal = ops.journal_for(config_of(ctx, required=False), create=False)
    rows = journal.history(key, entity)
    history: list[dict[str, Any]] = [{"run_id": h.run, "at": h.applied_at or h.planned_at, "source": h.source,
                "target": h.target, "op": h.op, "outcome": h.outcome, "hash": h.hash,
                "entity": h.entity, "entry": h.entry, "kind": h.kind} for h in rows]
    if as_json:
        print(json.dumps({"key": key, "entity": entity or (rows[0].entity if rows else None),
                          "history": history}))
        return
    if not rows:
        err.print(f"No journaled operation on {key}.")
        return
    out.print(render.simple_table(f"History of {key}", ["At", "Run", "Entity", "Op", "Outcome",
                                                        "Source → target", "Hash"], [
        (render.short_time(h["at"]), h["run_id"], h["entity"], h["op"], h["outcome"],
         f"{h['source']} → {h['target']}", h["hash"]) for h in history]))


@cli.command()
@click.option("--run", "run_text", help="Only this run")
@click.option("--since", help="Only events at or after this ISO time")
@click.option("--json", "as_json", is_flag=True, help="JSON lines")
@click.pass_context
def log(ctx: click.Context, run_text: str | None, since: str | None, as_json: bool) -> None:
    """The journal's events, oldest first."""
    journal = ops.journal_for(config_of(ctx, required=False), create=False)
    run_id = journal.resolve_run(run_text) if run_text else None
    for rec in journal.read(run=run_id):
        if since and rec.at < since:
            continue
        line = {"seq": rec.seq, "at": rec.at, "run": rec.run, "type": rec.type,
                **_event_brief(rec.event)}
        if as_json:
            print(json.dumps(line))
        else:
            extra = " ".join(f"{k}={v}" for k, v in line.items() if k not in ("seq", "at", "run", "type"))
            out.print(f"{rec.seq:>6} {rec.at} {rec.run} {rec.type} {extra}")


def _event_brief(event: Any) -> dict[str, Any]:
    """The event without its bulky fields (payload, per-record lists)."""
    brief = {}
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if name in ("run", "at", "payload", "hashes", "columns"):
            continue
        if name in ("keys", "outcomes"):
            brief["records"] = len(value)
            if name == "outcomes":
                brief.update({o: value.count(o) for o in sorted(set(value))})
            continue
        brief[name] = value
    return brief


@cli.group("journal")
def journal_group() -> None:
    """Check or rebuild the journal."""


@journal_group.command("verify")
@click.pass_context
def journal_verify(ctx: click.Context) -> None:
    """Exit 1 on any broken chain or projection mismatch."""
    journal = ops.journal_for(config_of(ctx, required=False), create=False)
    report = journal.verify()
    if report.ok:
        out.print(f"ok: {report.events} events, hash chain intact, projections match")
        return
    for problem in report.problems:
        err.print(f"[red]{problem}[/]")
    sys.exit(EXIT_FAILED)


@journal_group.command("rebuild")
@click.pass_context
def journal_rebuild(ctx: click.Context) -> None:
    """Drop the projections and rebuild them from the events."""
    journal = ops.journal_for(config_of(ctx, required=False), create=False)
    journal.rebuild_projections()
    out.print("projections rebuilt")


@cli.command()
@click.argument("env")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def schema(ctx: click.Context, env: str, as_json: bool) -> None:
    """Keys, references, children, natural keys and dependency order of ENV."""
    config = config_of(ctx)

    async def load() -> Any:
        store = ops.open_store(config, env, readonly=True)
        try:
            return await ops.load_schema(config, store)
        finally:
            await store.close()

    graph = anyio.run(load)
    entities = [{"entity": e.name, "key": e.key, "natural_key": list(e.natural_key),
                 "references": [{"field": str(r.field), "target": r.target, "origin": r.origin}
                                for r in e.references],
                 "children": list(e.children), "blob_fields": [str(f) for f in e.blob_fields]}
                for e in (graph.entity(n) for n in graph.order)]
    if as_json:
        print(json.dumps({"environment": env, "order": list(graph.order), "entities": entities}))
        return
    out.print(render.simple_table(f"Schema of {env} (dependency order)", [
        "Entity", "Key", "References", "Children", "Natural key", "Blob fields"], [
        (e["entity"], e["key"], ", ".join(f"{r['field']} → {r['target']}" for r in e["references"]),
         ", ".join(e["children"]), ", ".join(e["natural_key"]), ", ".join(e["blob_fields"]))
        for e in entities]))


def main() -> None:
    """Console-script entry point."""
    STOP.install()
    cli.main(prog_name="syncd")
