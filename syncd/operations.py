"""Operations: one function per thing a user can ask, shared by the CLI and (later) the daemon.

Everything that can be wrong with the input is checked in `connect()`, before the journal or
any target is touched, so bad input fails with nothing written (invariant 8).
"""
from __future__ import annotations

import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import anyio

from journal import SqliteJournal, open_journal

from . import blobs
from .applier import Applier, ApplyResult, Progress
from .clock import new_run_id
from .config import Config, sqlite_path, token_value
from .errors import InputError, Interrupted, RunStateError, SchemaError
from .filters import parse_filters
from .journaling import JournalSink, NullSink
from .locks import hold_run_lock
from .plan import APPLIED_KEYS, FILES, PlanRequest, PlanSummary, RecordAction
from .planner import PlanContext, Planner, involved_entities
from .schema import Schema, build_schema
from .tasks import task_group
from .stores.base import RecordStore
from .stores.sqlite import SqliteStore
from .transforms import BlobRewriter, Transformer


def open_store(config: Config, env: str, *, readonly: bool) -> RecordStore:
    """The environment's record store, by URL scheme. An HTTP store checks its token (and,
    for a target, write access) when first described: in `connect()`, before any write."""
    environment = config.environment(env)
    if environment.records.startswith(("http:", "https:")):
        try:  # httpx is the optional `http` extra
            from .stores.http import HttpOptions, HttpStore
        except ImportError as exc:
            raise InputError(f"environment '{env}' is an HTTP environment: install the http "
                             f"extra (pip install 'syncd[http]'): {exc}") from None
        return HttpStore(env, environment.records, token_value(env, environment), readonly=readonly,
                         options=HttpOptions(timeout=environment.timeout))
    if not environment.records.startswith("sqlite:"):
        raise InputError(f"environment '{env}': records URL scheme not supported yet: {environment.records}")
    return SqliteStore(env, sqlite_path(environment.records, config.base_dir), readonly=readonly)


def journal_for(config: Config, *, create: bool = True) -> SqliteJournal:
    """The journal; commands that only read it refuse to create an empty one."""
    path = sqlite_path(config.journal.url, config.base_dir)
    if not create and not path.exists():
        raise InputError(f"no journal at {path}: nothing has run yet")
    return open_journal(path)


async def load_schema(config: Config, store: RecordStore) -> Schema:
    return build_schema(await store.describe(), config.entities)


@asynccontextmanager
async def connect(config: Config, request: PlanRequest) -> AsyncIterator[PlanContext]:
    """Open both stores and validate the whole request against their schemas."""
    if request.source == request.target:
        raise InputError(f"source and target are the same environment '{request.source}'")
    if request.limit is not None and request.limit < 0:
        raise InputError(f"--limit must be 0 or more, got {request.limit}")
    source = open_store(config, request.source, readonly=True)
    try:
        target = open_store(config, request.target, readonly=False)
        try:
            context = await _context(config, request, source, target)
            await check_blob_targets(config, request)
            yield context
        finally:
            await target.close()
    finally:
        await source.close()


async def _context(config: Config, request: PlanRequest, source: RecordStore,
                   target: RecordStore) -> PlanContext:
    schema = await load_schema(config, source)
    root = schema.entity(request.entity) if request.entity else None
    if root is None:
        if request.kind != "transfer":
            raise InputError("--entity is required for copy")
        root = schema.entity(schema.root())
    tree = schema.tree(root.name) if request.kind == "transfer" else (root.name,)
    check_target(schema, await load_schema(config, target), involved_entities(schema, tree), target.name)
    rewriter = None
    if request.copy_files:
        env = config.environment(request.target)
        rewriter = BlobRewriter(request.target, request.source, env.blob_map, request.target_bucket)
    transformer = Transformer(clear=tuple(root.field(f) for f in request.clear),
                              clear_entity=root.name, rewriter=rewriter)
    return PlanContext(request, source, target, schema, root,
                       parse_filters(request.filters, root), tree, transformer)


async def check_blob_targets(config: Config, request: PlanRequest) -> None:
    """Before any write: gs:// buckets named up front (the target's blob_map, --target-bucket)
    are reachable, which also proves a GCS client can be built. Buckets known only from the
    records (sources, derived targets) are checked by the planner before the plan is sealed."""
    if not request.copy_files:
        return
    overridden = request.target_bucket is not None  # --target-bucket takes every gs:// source
    targets = [t for s, t in config.environment(request.target).blob_map.items()
               if t.startswith("gs://") and not (overridden and s.startswith("gs://"))]
    if request.target_bucket is not None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", request.target_bucket):
            raise InputError(f"--target-bucket {request.target_bucket!r} is not a bucket name "
                             "(give the name alone, e.g. co-dev-data)")
        targets.append(f"gs://{request.target_bucket}/")
    if targets:
        await anyio.to_thread.run_sync(blobs.check_buckets, targets)


def check_target(source: Schema, target: Schema, names: list[str], env: str) -> None:
    """Every entity the run may write exists in the target with the same key and columns."""
    for name in names:
        if name not in target.entities:
            raise SchemaError(f"environment '{env}' has no entity '{name}'")
        want, have = source.entity(name), target.entity(name)
        missing = [c for c in want.columns if c not in have.columns]
        if missing or want.key != have.key:
            raise SchemaError(f"environment '{env}': entity '{name}' differs from the source "
                              f"(missing columns: {', '.join(missing) or 'none'}; key {have.key})")


@dataclass
class Planned:
    run_id: str | None  # None for a dry run
    summary: PlanSummary
    entries: int
    actions: list[RecordAction] | None


async def plan(ctx: PlanContext, journal: SqliteJournal | None, *, verbose: bool = False,
               stopping: Callable[[], bool] = lambda: False, run_id: str | None = None) -> Planned:
    """Plan into the journal (sealed at the end), or nowhere when journal is None (dry run)."""
    if journal is None:
        sink = NullSink()
        planner = Planner(ctx, sink, verbose=verbose, stopping=stopping)
        return Planned(None, await planner.run(), sink.entries, planner.actions)
    run_id = run_id or new_run_id()
    jsink = JournalSink(journal, run_id, ctx.request)
    planner = Planner(ctx, jsink, verbose=verbose, stopping=stopping)
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


async def apply(config: Config, journal: SqliteJournal, run_id: str, *,
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
            return await Applier(journal, run_id, target, schema, stopping=stopping,
                                 progress=progress, file_workers=file_workers).run()
        finally:
            await target.close()


async def replan(config: Config, journal: SqliteJournal, run_id: str, *,
                 stopping: Callable[[], bool] = lambda: False,
                 file_workers: int = blobs.DEFAULT_FILE_WORKERS) -> Planned:
    """Plan a run again whose planning was cut off before its seal (nothing was applied)."""
    with hold_run_lock(journal.path, run_id):
        run = journal.run(run_id)
        assert run is not None
        if run.sealed_at is not None:
            raise RunStateError(f"run {run_id} was planned meanwhile by another process")
        request = PlanRequest.from_options(run.options)
        async with connect(config, request) as ctx:
            ctx.file_workers = file_workers
            return await plan(ctx, journal, stopping=stopping, run_id=run_id)


async def plan_and_apply(config: Config, journal: SqliteJournal, request: PlanRequest, *,
                         run_id: str | None = None,
                         stopping: Callable[[], bool] = lambda: False) -> tuple[Planned, str]:
    """Plan a run into the journal and apply it at once (the daemon's jobs); the status."""
    async with connect(config, request) as ctx:
        planned = await plan(ctx, journal, stopping=stopping, run_id=run_id)
    assert planned.run_id is not None
    return planned, (await apply(config, journal, planned.run_id, stopping=stopping)).status


async def finish_run(config: Config, journal: SqliteJournal, run_id: str, *,
                     stopping: Callable[[], bool] = lambda: False) -> str:
    """Bring a journaled run to its end, as `syncd resume` does: plan it again if its planning
    was cut off, then apply what it has not applied. Returns the run's status."""
    run = journal.run(run_id)
    if run is None:
        raise RunStateError(f"unknown run {run_id}")
    if run.status == "completed":
        return "completed"
    if run.sealed_at is None:
        await replan(config, journal, run_id, stopping=stopping)
    return (await apply(config, journal, run_id, stopping=stopping)).status


def applied_counts(journal: SqliteJournal, run_id: str) -> dict[str, Any]:
    entities: dict[str, dict[str, int]] = {}
    files = {"copied": 0, "skipped": 0, "failed": 0}
    for e in journal.entries(run_id):
        if e.entity == FILES:
            files["copied"] += e.created
            files["skipped"] += e.skipped
            files["failed"] += e.failed
            continue
        c = entities.setdefault(e.entity, dict.fromkeys(APPLIED_KEYS, 0))
        for k in APPLIED_KEYS:
            c[k] += getattr(e, k)
    return {"entities": entities, "files": files}


def journal_path(config: Config) -> Path:
    return sqlite_path(config.journal.url, config.base_dir)
