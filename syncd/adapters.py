"""Adapters opened for a run (record stores, the journal) and the whole request checked.

Everything that can be wrong with the input is checked in `connect()`, before the journal or
any target is touched, so bad input fails with nothing written (invariant 3.8 in
docs/architecture.md). The use cases that follow (plan, apply, resume) are syncd/operations.py.
"""
from __future__ import annotations

import re
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import anyio


from . import archive, blobs, journals, stores
from .archive.store import ArchiveStore, open_archive, open_staging, stage_files
from .config import Config
from .errors import InputError, SchemaError
from .filters import parse_filters
from .planner import PlanContext, involved_entities
from .planner.clone import clone_tree, typed_assignments
from .request import RunRequest, option_name
from .schema import Entity, FieldPath, Schema, build_schema
from .stores.base import RecordStore
from .transforms import BlobRewriter, Transformer


def open_store(config: Config, env: str, *, readonly: bool) -> RecordStore:
    """The environment's record store, picked by URL scheme (syncd/stores/__init__.py). A
    network store checks its credentials (and, for a target, write access) when first
    described: in `connect()`, before any write. An archive (`archive:/path.zip`) read is
    loaded into a scratch SQLite file; one written is its export's staging file."""
    if archive.is_archive(env):
        path = archive.archive_path(env)
        if readonly:
            return open_archive(env, path)
        return open_staging(env, archive.staging_path(path), None, readonly=False)
    return stores.open_store(env, config.environment(env), config.base_dir, readonly=readonly)


async def open_target(config: Config, request: RunRequest, source: RecordStore, *,
                      dry_run: bool) -> RecordStore:
    """The run's target; an export's is its staging file, made with the source's tables."""
    if request.kind != "export":
        return open_store(config, request.target, readonly=dry_run)
    path = archive.staging_path(archive.archive_path(request.target))
    if dry_run:  # a scratch one: a dry run writes nothing beside the archive
        path = Path(tempfile.mkdtemp(prefix="syncd-export-")) / path.name
    return open_staging(request.target, path, await source.describe(), readonly=False)


async def load_schema(config: Config, store: RecordStore) -> Schema:
    return build_schema(await store.describe(), config.entities)


@asynccontextmanager
async def connect(config: Config, request: RunRequest, *,
                  dry_run: bool = False) -> AsyncIterator[PlanContext]:
    """Open both stores and validate the whole request against their schemas. A dry run opens
    the target read-only: it only reads (and a read-only token is enough)."""
    for name, problem in request.problems().items():  # RunRequest.build checked these too
        raise InputError(f"{option_name(name)}: {problem}")
    source = open_store(config, request.source, readonly=True)
    try:
        target = await open_target(config, request, source, dry_run=dry_run)
        try:
            context = await _context(config, request, source, target)
            if request.copy_files and isinstance(source, ArchiveStore) and source.archive:
                # staged where a resume finds them again; a dry run's go to a scratch folder
                folder = (Path(tempfile.mkdtemp(prefix="syncd-files-")) if dry_run
                          else journals.journal_path(config).parent / "archive-files")
                context.blob_source = await anyio.to_thread.run_sync(stage_files, source.archive, folder)
            await check_blob_targets(config, request)
            yield context
        finally:
            await target.close()
    finally:
        await source.close()


async def _context(config: Config, request: RunRequest, source: RecordStore,
                   target: RecordStore) -> PlanContext:
    schema = await load_schema(config, source)
    root, tree = _selection(schema, request)
    target_schema = await load_schema(config, target)
    check_target(schema, target_schema, involved_entities(schema, tree), target.name)
    clear = tuple(root.field(f) for f in request.clear)
    check_clear(target_schema.entity(root.name), clear, target.name)
    rewriter = None
    if request.copy_files and request.kind != "export":  # an export keeps its files' URIs
        env = config.environment(request.target)
        rewriter = BlobRewriter(request.target, request.source, env.blob_map, request.target_bucket)
    transformer = Transformer(clear=clear, clear_entity=root.name, rewriter=rewriter)
    # --set: on the cloned roots, or on a move's new scope record
    assigned = request.to.partition(":")[0] if request.kind == "move" and request.to else root.name
    assign = typed_assignments(target_schema.entity(assigned), request.set)
    return PlanContext(request, source, target, schema, root,
                       parse_filters(request.filters, root), tree, transformer,
                       target_schema=target_schema, assign=assign)


def _selection(schema: Schema, request: RunRequest) -> tuple[Entity, tuple[str, ...]]:
    """The root entity and the entities the run takes: a tree below the root, or (imports,
    restores, reverts, --all and --label exports) every entity, one after the other."""
    if request.by_entity:
        return schema.entity(schema.order[0]), schema.order
    root = schema.entity(request.entity) if request.entity else None
    if root is None:
        if request.kind not in ("transfer", "export"):
            raise InputError(f"--entity is required for {request.kind}")
        root = schema.entity(schema.root())
    tree = (schema.tree(root.name) if request.kind in ("transfer", "move", "export")
            else clone_tree(schema, root, request.include) if request.kind == "clone"
            else (root.name,))
    return root, tree


async def check_blob_targets(config: Config, request: RunRequest) -> None:
    """Before any write: gs:// buckets named up front (the target's blob_map, --target-bucket)
    are reachable, which also proves a GCS client can be built. Buckets known only from the
    records (sources, derived targets) are checked by the planner before the plan is sealed."""
    if not request.copy_files or request.kind == "export":
        return
    overridden = request.target_bucket is not None  # --target-bucket takes every gs:// source
    targets = [t for s, t in config.environment(request.target).blob_map.items()
               if t.startswith("gs://") and not (overridden and s.startswith("gs://"))]
    if request.target_bucket is not None:
        # Only gs:// sources go there, and only the records show whether there are any: the
        # planner checks the bucket with the first one (before the seal), so a run of file://
        # blobs never needs GCS credentials.
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", request.target_bucket):
            raise InputError(f"--target-bucket {request.target_bucket!r} is not a bucket name "
                             "(give the name alone, e.g. co-dev-data)")
    if targets:
        await anyio.to_thread.run_sync(blobs.check_buckets, targets)


def check_clear(entity: Entity, fields: tuple[FieldPath, ...], env: str) -> None:
    """--clear of a column the target declares NOT NULL would fail every create, on every
    resume: refuse it before anything is planned."""
    for f in fields:
        if not f.path and entity.types[f.column].notnull:
            raise SchemaError(f"--clear {f}: environment '{env}' declares {entity.name}.{f.column} "
                              "NOT NULL, so no record could be written without it")


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
