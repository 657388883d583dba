"""Operations: one function per thing a user can ask (plan, apply, resume), shared by the CLI
and the daemon. Opening the stores and checking the request first is syncd/adapters.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import anyio

from journal import ACTIVE, ApplyStarted, ArchiveWritten, Journal, RunCancelled

from . import archive, blobs, failpoints
from .archive.export import Written, write_archive
from .applier import Applier, ApplyResult, Progress
from .clock import new_run_id, now
from .config import Config
from .adapters import connect, load_schema, open_store
from .errors import ConflictError, Interrupted, RunStateError
from .journaling import JournalSink, NullSink
from .follower import Follower
from .locks import Lock, hold_run_lock
from .plan import Checkpoint, PlanSummary, RecordAction
from .planner import PlanContext, PlanSink, Planner
from .planner.clone import ClonePlanner
from .planner.entities import EntityPlanner
from .planner.move import MovePlanner
from .planner.revert import ExportDeletePlanner, RevertPlanner
from .payload import unpack_rows
from .request import RunRequest
from .schema import Schema
from .tasks import task_group
from .watch import OutcomeWatch


# SYNCD_OVERLAP=0 plans first and applies after, in one process, even where the planner makes
# checkpoints (a comparison for benchmarks, a fallback if the second process is unwelcome).
OVERLAP_VAR = "SYNCD_OVERLAP"
WORKERS_POLL = 0.2  # seconds between two looks at a run that workers apply


@dataclass
class Applying:
    """An applier process applying a run's checkpoints while it is planned, and the run's
    lock, held by the planning process until apply() has ended the run."""

    follower: Follower
    lock: Lock


@dataclass
class Planned:
    run_id: str | None  # None for a dry run
    summary: PlanSummary
    entries: int
    actions: list[RecordAction] | None
    applying: Applying | None = None


def planner_for(ctx: PlanContext, sink: PlanSink, **options: Any) -> Planner:
    """The planner of the request's kind: clone's makes new records, move's re-scopes
    records in place, revert's reads an earlier run; imports, restores and --all/--label
    exports go entity by entity; copy and transfer's bring a tree of records over as they are."""
    request = ctx.request
    kinds: dict[str, type[Planner]] = {"clone": ClonePlanner, "move": MovePlanner,
                                       "revert": RevertPlanner, "delete": ExportDeletePlanner}
    if request.kind in kinds:
        return kinds[request.kind](ctx, sink, **options)
    if request.by_entity:
        only = label_keys(_journal_of(ctx), ctx.schema, request.source, request.labels) if request.labels else None
        return EntityPlanner(ctx, sink, only_keys=only, **options)
    return Planner(ctx, sink, **options)


def _journal_of(ctx: PlanContext) -> Journal:
    if ctx.journal is None:
        raise RunStateError(f"{ctx.request.kind} reads the journal, and there is none")
    return ctx.journal


def label_keys(journal: Journal, schema: Schema, env: str, labels: tuple[str, ...]) -> dict[str, set[Any]]:
    """entity → keys of the records that imports labelled so wrote into env (created or
    updated); which of them are still there is the planner's fetch."""
    keys: dict[str, set[Any]] = {}
    for run in journal.runs():
        if run.kind != "import" or run.target != env or run.options.get("label") not in labels:
            continue
        for row in journal.entries(run.run):
            if row.op not in ("create", "update") or not (row.created or row.updated) \
                    or row.entity not in schema.entities:
                continue
            planned, applied = journal.planned(run.run, row.entry), journal.applied(run.run, row.entry)
            assert applied is not None
            at = planned.columns.index("key" if row.op == "update" else schema.entity(row.entity).key)
            found = keys.setdefault(row.entity, set())
            found.update(r[at] for r, o in zip(unpack_rows(planned.payload), applied.outcomes)
                         if o in ("created", "updated"))
    return keys


async def plan(ctx: PlanContext, journal: Journal | None, *, verbose: bool = False,
               stopping: Callable[[], bool] = lambda: False, run_id: str | None = None,
               overlap: Config | None = None, lock: Lock | None = None) -> Planned:
    """Plan into the journal (sealed at the end), or nowhere when journal is None (dry run).

    With `overlap` (the config) and a planner that makes checkpoints, an applier process
    starts applying them at once (syncd/follower.py): `Planned.applying`, which apply()
    then waits for. It holds the run's `lock` (taken here when not given) until apply() ends.
    A run whose planning was cut off after a checkpoint is planned on from there."""
    ctx.journal = ctx.journal or journal
    if journal is None:
        sink = NullSink()
        planner = planner_for(ctx, sink, verbose=verbose, stopping=stopping)
        return Planned(None, await planner.run(), sink.entries, planner.actions)
    # A planning cut off after checkpoints goes on from the last. (A new run has none, and
    # asking would create the journal file before the planner has found any input error.)
    checkpoints = journal.checkpoints(run_id) if run_id else []
    run_id = run_id or new_run_id()
    applying: Applying | None = None

    def start_applying() -> None:  # at the first checkpoint: a plan of one group never needs it
        nonlocal applying
        if applying is None and overlap is not None and os.environ.get(OVERLAP_VAR) != "0":
            held = lock or hold_run_lock(journal, run_id)  # before the process: it needs it held
            applying = Applying(Follower.start(overlap, run_id, ctx.request.target), held)

    jsink = JournalSink(journal, run_id, ctx.request, resumed=checkpoints[-1] if checkpoints else None,
                        on_checkpoint=start_applying)
    planner = planner_for(ctx, jsink, verbose=verbose, stopping=stopping)
    jsink.checkpointed = planner.checkpointed
    if checkpoints:
        planner.resume_from([Checkpoint(c.cursor, c.summary, c.known, c.remaps) for c in checkpoints])
        start_applying()  # what the checkpoints sealed is applied while planning goes on
    try:
        async with task_group() as tasks:
            tasks.start_soon(jsink.write)
            try:
                summary = await planner.run()
            finally:
                await jsink.close()  # the writer drains what is queued, then ends
    except BaseException as exc:
        interrupted = isinstance(exc, Interrupted)
        await jsink.abort("interrupted" if interrupted else "failed",
                          "planning interrupted; resume plans on" if interrupted
                          else f"planning failed: {exc}", cancel=isinstance(exc, ConflictError))
        if applying is not None:
            applying.follower.stop()  # it stops after the entry in hand
            if applying.lock is not lock:
                applying.lock.release()
        raise
    await jsink.seal(summary)
    return Planned(run_id, summary, jsink.entries, planner.actions, applying)


async def apply(config: Config, journal: Journal, run_id: str, *,
                stopping: Callable[[], bool] = lambda: False,
                progress: Progress | None = None,
                file_workers: int = blobs.DEFAULT_FILE_WORKERS,
                applying: Applying | None = None) -> ApplyResult:
    """Apply a sealed run and end it. With `applying`, an applier process has been applying
    it while it was planned: wait for it, then apply what it did not reach."""
    progress = progress or Progress()
    with applying.lock if applying else hold_run_lock(journal, run_id):
        run = journal.run(run_id)  # read under the lock: another applier may just have ended it
        if run is None:
            raise RunStateError(f"unknown run {run_id}")
        followed = False
        if applying is not None:
            progress.on_start(sum(e.records for e in journal.entries(run_id) if e.op != "copy"), 0)
            async with task_group() as tasks:  # the planning is done: its core indexes the run meanwhile
                tasks.start_soon(anyio.to_thread.run_sync, journal.catch_up_index)
                followed = await applying.follower.wait(journal, run_id, progress.on_entry, stopping)
        target = open_store(config, run.target, readonly=False)
        try:
            schema = await load_schema(config, target)
            result = await Applier(journal, run_id, target, schema, stopping=stopping,
                                   progress=progress, file_workers=file_workers).run(followed=followed)
        finally:
            await target.close()
    if result.status == "completed":
        await finish_export(config, journal, run_id)
    if not stopping():  # index the run's records now, off `audit`'s path (a stop skips it)
        await anyio.to_thread.run_sync(journal.catch_up_index)  # a thread: the daemon's loop goes on
    return result


async def finish_export(config: Config, journal: Journal, run_id: str) -> Written | None:
    """A completed export's archive: written from its staging file, verified, journaled
    (ArchiveWritten), then the staging file removed. Nothing for other runs, nor for an
    export whose archive is journaled already; a resume after a crash in here writes it again."""
    run = journal.run(run_id)
    if run is None or run.kind != "export" or run.status != "completed" or "archive" in run.summary:
        return None
    staging = open_store(config, run.target, readonly=False)
    try:
        schema = await load_schema(config, staging)
    finally:
        await staging.close()
    written = await anyio.to_thread.run_sync(write_archive, run, schema)
    failpoints.hit("export.after-zip")
    journal.append([ArchiveWritten(run=run_id, at=now(), path=str(written.path), sha256=written.sha256,
                                   size=written.size)])
    archive.staging_path(written.path).unlink(missing_ok=True)
    return written


async def replan(config: Config, journal: Journal, run_id: str, *,
                 stopping: Callable[[], bool] = lambda: False,
                 file_workers: int = blobs.DEFAULT_FILE_WORKERS, overlap: bool = False) -> Planned:
    """Plan a run again whose planning was cut off before its seal: from its last checkpoint
    (what the checkpoints sealed may be applied already), or from the start when it has none
    (nothing was applied). With `overlap`, as plan() does."""
    lock = hold_run_lock(journal, run_id)
    try:
        run = journal.run(run_id)
        assert run is not None
        if run.sealed_at is not None or run.status == "cancelled":
            raise RunStateError(f"run {run_id} was {'cancelled' if run.status == 'cancelled' else 'planned'} "
                                "meanwhile by another process")
        request = RunRequest.from_options(run.options)
        async with connect(config, request) as ctx:
            ctx.file_workers = file_workers
            planned = await plan(ctx, journal, stopping=stopping, run_id=run_id,
                                 overlap=config if overlap else None, lock=lock)
    except BaseException:
        lock.release()
        raise
    if planned.applying is None:
        lock.release()
    return planned


async def plan_and_apply(config: Config, journal: Journal, request: RunRequest, *,
                         run_id: str | None = None,
                         stopping: Callable[[], bool] = lambda: False) -> tuple[Planned, str]:
    """Plan a run into the journal and apply it at once, overlapped where the planner makes
    checkpoints (the daemon's jobs); the status."""
    async with connect(config, request) as ctx:
        planned = await plan(ctx, journal, stopping=stopping, run_id=run_id,
                             overlap=None if request.workers else config)
    assert planned.run_id is not None
    if request.workers:
        return planned, await await_workers(journal, planned.run_id, stopping=stopping) or "interrupted"
    result = await apply(config, journal, planned.run_id, stopping=stopping, applying=planned.applying)
    return planned, result.status


async def finish_run(config: Config, journal: Journal, run_id: str, *,
                     stopping: Callable[[], bool] = lambda: False) -> str:
    """Bring a journaled run to its end, as `syncd resume` does: plan it on if its planning
    was cut off, then apply what it has not applied. Returns the run's status."""
    run = journal.run(run_id)
    if run is None:
        raise RunStateError(f"unknown run {run_id}")
    if run.status == "completed":
        await finish_export(config, journal, run_id)  # an export that died writing its zip
    if run.status in ("completed", "cancelled"):
        return run.status
    if run.options.get("workers"):
        await hand_to_workers(config, journal, run_id, stopping=stopping)
        return await await_workers(journal, run_id, stopping=stopping) or "interrupted"
    applying = None
    if run.sealed_at is None:
        applying = (await replan(config, journal, run_id, stopping=stopping, overlap=True)).applying
    return (await apply(config, journal, run_id, stopping=stopping, applying=applying)).status


async def hand_to_workers(config: Config, journal: Journal, run_id: str, *,
                          stopping: Callable[[], bool] = lambda: False) -> None:
    """Give a run planned for workers back to them (resume): its planning, if cut off, goes
    on here from its last checkpoint; a failed or interrupted run gets a new ApplyStarted, so
    workers take its failed entries again with its pending ones."""
    run = journal.run(run_id)
    if run is not None and run.sealed_at is None:
        await replan(config, journal, run_id, stopping=stopping)
        run = journal.run(run_id)
    if run is not None and run.sealed_at is not None and run.status in ("failed", "interrupted"):
        journal.append([ApplyStarted(run=run_id, at=now(), attempt=run.attempts + 1)])


async def await_workers(journal: Journal, run_id: str,
                        on_entry: Callable[[str, int], None] = lambda entity, records: None,
                        stopping: Callable[[], bool] = lambda: False) -> str | None:
    """Until `syncd worker` processes have ended the run, reporting each entry they apply;
    its status, or None when `stopping` ended the wait first (the workers go on)."""
    watch = OutcomeWatch(journal, run_id, on_entry)
    while not stopping():
        run = journal.run(run_id)
        watch.look()
        if run is None or run.status not in ACTIVE:
            return run.status if run is not None else "cancelled"
        await anyio.sleep(WORKERS_POLL)
    return None


def cancel(journal: Journal, run_id: str, reason: str) -> None:
    """Abandon a run that is not completed: journaled, so `runs` shows it cancelled and no
    resume or daemon ever applies it. What it already applied stays (and stays audited)."""
    with hold_run_lock(journal, run_id):  # not while another process applies it
        run = journal.run(run_id)
        if run is None:
            raise RunStateError(f"unknown run {run_id}")
        if run.status in ("completed", "cancelled"):
            raise RunStateError(f"run {run_id} is {run.status}; there is nothing to cancel")
        journal.append([RunCancelled(run=run_id, at=now(), reason=reason)])
