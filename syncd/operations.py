"""Operations: one function per thing a user can ask (plan, apply, resume), shared by the CLI
and the daemon. Opening the stores and checking the request first is syncd/adapters.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import anyio

from journal import Journal, RunCancelled

from . import blobs
from .applier import Applier, ApplyResult, Progress
from .clock import new_run_id, now
from .config import Config
from .adapters import connect, load_schema, open_store
from .errors import Interrupted, RunStateError
from .journaling import JournalSink, NullSink
from .locks import hold_run_lock
from .plan import PlanSummary, RecordAction
from .planner import PlanContext, PlanSink, Planner
from .planner.clone import ClonePlanner
from .planner.move import MovePlanner
from .request import RunRequest
from .tasks import task_group


@dataclass
class Planned:
    run_id: str | None  # None for a dry run
    summary: PlanSummary
    entries: int
    actions: list[RecordAction] | None


def planner_for(ctx: PlanContext, sink: PlanSink, **options: Any) -> Planner:
    """The planner of the request's kind: clone's makes new records, move's re-scopes
    records in place; copy and transfer's bring records over as they are."""
    kinds: dict[str, type[Planner]] = {"clone": ClonePlanner, "move": MovePlanner}
    return kinds.get(ctx.request.kind, Planner)(ctx, sink, **options)


async def plan(ctx: PlanContext, journal: Journal | None, *, verbose: bool = False,
               stopping: Callable[[], bool] = lambda: False, run_id: str | None = None) -> Planned:
    """Plan into the journal (sealed at the end), or nowhere when journal is None (dry run)."""
    if journal is None:
        sink = NullSink()
        planner = planner_for(ctx, sink, verbose=verbose, stopping=stopping)
        return Planned(None, await planner.run(), sink.entries, planner.actions)
    run_id = run_id or new_run_id()
    jsink = JournalSink(journal, run_id, ctx.request)
    planner = planner_for(ctx, jsink, verbose=verbose, stopping=stopping)
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
                          "planning interrupted; resume plans again" if interrupted
                          else f"planning failed: {exc}")
        raise
    await jsink.seal(summary)
    return Planned(run_id, summary, jsink.entries, planner.actions)


async def apply(config: Config, journal: Journal, run_id: str, *,
                stopping: Callable[[], bool] = lambda: False,
                progress: Progress | None = None,
                file_workers: int = blobs.DEFAULT_FILE_WORKERS) -> ApplyResult:
    with hold_run_lock(journal.path, run_id):
        run = journal.run(run_id)  # read under the lock: another applier may just have ended it
        if run is None:
            raise RunStateError(f"unknown run {run_id}")
        target = open_store(config, run.target, readonly=False)
        try:
            schema = await load_schema(config, target)
            result = await Applier(journal, run_id, target, schema, stopping=stopping,
                                   progress=progress, file_workers=file_workers).run()
        finally:
            await target.close()
    if not stopping():  # index the run's records now, off `audit`'s path (a stop skips it)
        await anyio.to_thread.run_sync(journal.catch_up_index)  # a thread: the daemon's loop goes on
    return result


async def replan(config: Config, journal: Journal, run_id: str, *,
                 stopping: Callable[[], bool] = lambda: False,
                 file_workers: int = blobs.DEFAULT_FILE_WORKERS) -> Planned:
    """Plan a run again whose planning was cut off before its seal (nothing was applied)."""
    with hold_run_lock(journal.path, run_id):
        run = journal.run(run_id)
        assert run is not None
        if run.sealed_at is not None or run.status == "cancelled":
            raise RunStateError(f"run {run_id} was {'cancelled' if run.status == 'cancelled' else 'planned'} "
                                "meanwhile by another process")
        request = RunRequest.from_options(run.options)
        async with connect(config, request) as ctx:
            ctx.file_workers = file_workers
            return await plan(ctx, journal, stopping=stopping, run_id=run_id)


async def plan_and_apply(config: Config, journal: Journal, request: RunRequest, *,
                         run_id: str | None = None,
                         stopping: Callable[[], bool] = lambda: False) -> tuple[Planned, str]:
    """Plan a run into the journal and apply it at once (the daemon's jobs); the status."""
    async with connect(config, request) as ctx:
        planned = await plan(ctx, journal, stopping=stopping, run_id=run_id)
    assert planned.run_id is not None
    return planned, (await apply(config, journal, planned.run_id, stopping=stopping)).status


async def finish_run(config: Config, journal: Journal, run_id: str, *,
                     stopping: Callable[[], bool] = lambda: False) -> str:
    """Bring a journaled run to its end, as `syncd resume` does: plan it again if its planning
    was cut off, then apply what it has not applied. Returns the run's status."""
    run = journal.run(run_id)
    if run is None:
        raise RunStateError(f"unknown run {run_id}")
    if run.status in ("completed", "cancelled"):
        return run.status
    if run.sealed_at is None:
        await replan(config, journal, run_id, stopping=stopping)
    return (await apply(config, journal, run_id, stopping=stopping)).status


def cancel(journal: Journal, run_id: str, reason: str) -> None:
    """Abandon a run that is not completed: journaled, so `runs` shows it cancelled and no
    resume or daemon ever applies it. What it already applied stays (and stays audited)."""
    with hold_run_lock(journal.path, run_id):  # not while another process applies it
        run = journal.run(run_id)
        if run is None:
            raise RunStateError(f"unknown run {run_id}")
        if run.status in ("completed", "cancelled"):
            raise RunStateError(f"run {run_id} is {run.status}; there is nothing to cancel")
        journal.append([RunCancelled(run=run_id, at=now(), reason=reason)])
