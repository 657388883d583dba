"""The planner: selection → children → parent closure → diff against the target → entries.

It only reads (source and target) and hands entries to a sink (the journal, or nothing for a
dry run). It works one group of root records at a time, so memory follows the chunk size,
not the selection: only the keys of parents already decided are remembered across groups.
Each step is its own module (selection, closure, diff, files, emit); this class strings them
together and keeps the counts and the `-v` notes.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable

from ..errors import Interrupted
from ..plan import FILES, Action, Checkpoint, PlanSummary, RecordAction
from ..schema import Entity
from ..stores.base import Row
from . import emit
from .closure import ParentClosure
from . import context
from .context import PlanContext, PlanSink, involved_entities
from .diff import Diff, diff_rows, update_patches
from .files import FileCheck, blob_pairs, check_files
from .keys import key_of, sorted_keys
from .selection import root_pages, select_tree


class Planner:
    # Whether this planner seals checkpoints between groups of roots, and so can be applied
    # while it plans and resumed from its last checkpoint (architecture §7). The planners of
    # other kinds keep state a cursor does not capture (clone's new keys, move's scopes,
    # entity-by-entity imports): their plan is sealed whole, then applied.
    checkpointed: ClassVar[bool] = True

    def __init__(self, ctx: PlanContext, sink: PlanSink, *, verbose: bool = False,
                 stopping: Callable[[], bool] = lambda: False, chunk: int | None = None) -> None:
        self.ctx = ctx
        self.sink = sink
        self.summary = PlanSummary()
        self.actions: list[RecordAction] | None = [] if verbose else None
        self._stopping = stopping
        self._chunk = chunk or context.CHUNK  # read now: tests change it
        self._closure = ParentClosure(ctx)
        self._cursor: dict[str, Any] | None = None  # where a resumed planning starts
        self._remaps: dict[str, list[list[Any]]] = {}  # natural-key matches since the last checkpoint
        for name in involved_entities(ctx.schema, ctx.tree):
            self.summary.entity(name)

    def resume_from(self, checkpoints: list[Checkpoint]) -> None:
        """Continue a planning cut off after these checkpoints: from the last one's cursor,
        with its counts, every parent decided before it and every natural-key match."""
        self.summary = PlanSummary.from_json(checkpoints[-1].summary)
        self._cursor = checkpoints[-1].cursor
        self._chunk = self._cursor.get("chunk", self._chunk)  # groups as before: the same entries
        for checkpoint in checkpoints:
            self._closure.restore(checkpoint.known)
            for entity, pairs in checkpoint.remaps.items():
                for source_key, target_key in pairs:
                    self.ctx.transformer.remap(entity, source_key, target_key)

    async def run(self) -> PlanSummary:
        async for roots, mark, cursor, more in root_pages(self.ctx, self._chunk, self._cursor):
            if self._stopping():
                raise Interrupted(0)
            await self._plan_group(roots)
            if mark is not None:
                self.summary.mark = mark.to_json()
            if self.checkpointed:
                await self.sink.checkpoint(self._checkpoint(cursor, more))
        return self.summary

    def _checkpoint(self, cursor: dict[str, Any], more: bool) -> Checkpoint:
        remaps, self._remaps = self._remaps, {}
        return Checkpoint(cursor | {"chunk": self._chunk}, self.summary.to_json(),
                          self._closure.take_fresh(), remaps, more)

    async def _plan_group(self, roots: list[Row]) -> None:
        await self._plan_selected(await select_tree(self.ctx, roots))

    async def _plan_selected(self, selected: dict[str, list[Row]]) -> None:
        """Plan these records (per entity) with every parent they need that no earlier group
        decided: counted, diffed, emitted files first, then entity by entity."""
        schema = self.ctx.schema
        parents = await self._closure.parents(selected)
        deps = parents.rows
        for name, keys in parents.dangling.items():
            self.summary.entity(name).dangling += len(keys)
            self._note_keys(name, sorted_keys(keys), "dangling", "referenced, but not in the source")
        diffs: dict[str, Diff] = {}
        for name in schema.order:
            rows = deps.get(name, []) + selected.get(name, [])
            if rows:
                counts = self.summary.entity(name)
                counts.selected += len(selected.get(name, ()))
                counts.dependencies += len(deps.get(name, ()))
                diffs[name] = await self._diff(schema.entity(name), rows)
        await self._emit_files(diffs)
        for name, diff in diffs.items():
            await self._emit_records(schema.entity(name), diff)

    async def _diff(self, entity: Entity, rows: list[Row]) -> Diff:
        ctx, counts = self.ctx, self.summary.entity(entity.name)
        diff = await diff_rows(ctx, entity, rows)
        for source_key, target_key in diff.remaps.items():  # later entities point at the match
            ctx.transformer.remap(entity.name, source_key, target_key)
            self._remaps.setdefault(entity.name, []).append([source_key, target_key])
        counts.existing += diff.existing
        counts.create += len(diff.creates)
        self._note(entity, diff.same_key, "skip")
        self._note_matches(entity, diff)
        if ctx.request.update and entity.name == ctx.root.name:
            for row, patch, before in await update_patches(ctx, entity, diff.present_pairs(entity)):
                diff.updates.append(patch)
                diff.before[patch[0]] = before
                self._note(entity, [row], "update", ", ".join(patch[1]))
            counts.update += len(diff.updates)
        return diff

    async def _emit_files(self, diffs: dict[str, Diff]) -> None:
        ctx, rewriter = self.ctx, self.ctx.transformer.rewriter
        if not (ctx.request.copy_files and rewriter):
            return
        pairs = blob_pairs(rewriter, ((ctx.schema.entity(n), d.creates + d.same_key)
                                      for n, d in diffs.items()))
        if ctx.blob_source is not None:  # an archive's files: read from where they were staged
            pairs = {ctx.blob_source(src): dst for src, dst in pairs.items()}
        copies = [c for c in await check_files(ctx, pairs) if self._count_file(c)]
        for entry in emit.file_entries(copies):
            await self.sink.add(entry)

    def _count_file(self, check: FileCheck) -> bool:
        """Counts and notes one file check; True when it is to be copied."""
        files = self.summary.files
        if check.verdict == "conflict" and not self.ctx.request.update:
            files.conflict += 1
            self._note_file(check.src, "conflict", f"{check.dst} holds other bytes (use --update)")
            return False
        if check.verdict == "existing":
            files.existing += 1
            self._note_file(check.src, "skip", check.dst)
            return False
        files.copy += 1
        self._note_file(check.src, "copy", check.dst)
        return True

    async def _emit_records(self, entity: Entity, diff: Diff) -> None:
        transformer = self.ctx.transformer
        rows = diff.creates
        if transformer.touches(entity):
            rows = [transformer.apply(entity, r) for r in rows]
        rows = emit.order_self_references(entity, rows)
        self._note(entity, rows, "create")
        for entry in emit.match_entries(entity, diff.remaps):
            await self.sink.add(entry)
        for entry in emit.create_entries(entity, rows, self.ctx.target_json_columns(entity.name)):
            await self.sink.add(entry)
        for entry in emit.update_entries(entity, diff.updates, diff.before,
                                          self.ctx.target_json_columns(entity.name)):
            await self.sink.add(entry)

    # -- the `-v` listing -------------------------------------------------------------------

    def _note(self, entity: Entity, rows: Iterable[Row], action: Action, note: str = "") -> None:
        if self.actions is not None:
            self.actions.extend(RecordAction(entity.name, key_of(entity, r), action, note) for r in rows)

    def _note_keys(self, entity: str, keys: Iterable[Any], action: Action, note: str) -> None:
        if self.actions is not None:
            self.actions.extend(RecordAction(entity, key, action, note) for key in keys)

    def _note_matches(self, entity: Entity, diff: Diff) -> None:
        if self.actions is not None:
            self.actions.extend(
                RecordAction(entity.name, key, "match", f"→ {diff.remaps[key]} in the target")
                for key in (key_of(entity, r) for r in diff.matched))

    def _note_file(self, src: str, action: Action, note: str) -> None:
        if self.actions is not None:
            self.actions.append(RecordAction(FILES, src, action, note, kind="file"))
