"""Planning entity by entity, parents first: an archive's every record (import, restore), an
environment's every record or a label's (export --all, export --label), and restore's deletes.

Each page of an entity is planned as a group of its own (planner.Planner._plan_selected): the
diff, natural-key matches and remapped references, files and entries are transfer's. What
differs is what a record the target holds with OTHER content means: an import's conflict
(--on-conflict error lists it, skip keeps the target's, update patches the differing fields,
a resolver decides), and for a restore a patch that makes it equal. Updates carry the
before-image of the fields they change, deletes the whole record: what `revert` puts back.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from ..archive.resolvers import Resolver, load_resolver
from ..errors import ConflictError, InputError, Interrupted
from ..schema import Entity
from ..stores.base import Row
from . import emit
from .closure import Parents
from .context import CHUNK, PlanContext, PlanSink
from .diff import Diff, before_image, changed_fields, current_rows, diff_rows
from .keys import key_of, sorted_keys
from .planner import Planner

MAX_LISTED = 1000  # conflicts kept for the message; all are counted


class EntityPlanner(Planner):
    checkpointed = False  # its plan is sealed whole (architecture §7)

    def __init__(self, ctx: PlanContext, sink: PlanSink, *, only_keys: dict[str, set[Any]] | None = None,
                 **options: Any) -> None:
        super().__init__(ctx, sink, **options)
        request = ctx.request
        self.conflicts: list[str] = []
        self._conflict_count = 0
        self._only = only_keys  # export --label: the records the label's imports wrote
        self._checks_content = request.kind in ("import", "restore")
        self._resolver: Resolver | None = (load_resolver(request.resolver) if request.resolver
                                           else None)
        if self._only is None:  # the whole archive or environment: parents are taken in turn
            self._closure.parents = _no_parents  # type: ignore[method-assign]

    async def run(self) -> Any:
        for name in self.ctx.tree:
            entity = self.ctx.schema.entity(name)
            async for rows in self._pages(entity):
                if self._stopping():
                    raise Interrupted(0)
                await self._plan_selected({name: rows})
                if self._only is not None:  # planned: later parents lookups skip them
                    self._closure.known.setdefault(name, set()).update(key_of(entity, r) for r in rows)
        if self.ctx.request.kind == "restore":
            await self._plan_deletes()
        if self._conflict_count and self._refuses_conflicts:
            raise ConflictError(f"{self._conflict_count} record(s) in '{self.ctx.target.name}' differ "
                                "from the archive; nothing was written (--on-conflict skip, update "
                                "or --resolver decides them)", self.conflicts)
        return self.summary

    @property
    def _refuses_conflicts(self) -> bool:
        request = self.ctx.request
        return request.kind == "import" and request.on_conflict == "error" and self._resolver is None

    async def _pages(self, entity: Entity) -> AsyncIterator[list[Row]]:
        source = self.ctx.source
        if self._only is not None:
            keys = sorted_keys(self._only.get(entity.name, ()))
            for start in range(0, len(keys), self._chunk):
                if rows := await source.fetch(entity, keys[start:start + self._chunk]):
                    yield rows
            return
        after = None
        while rows := await source.select_page(entity, (), after, self._chunk):
            yield rows
            after = key_of(entity, rows[-1])
            if len(rows) < self._chunk:
                return

    async def _diff(self, entity: Entity, rows: list[Row]) -> Diff:
        if not self._checks_content:
            return await super()._diff(entity, rows)
        ctx, counts = self.ctx, self.summary.entity(entity.name)
        diff = await diff_rows(ctx, entity, rows)
        for source_key, target_key in diff.remaps.items():
            ctx.transformer.remap(entity.name, source_key, target_key)
        counts.create += len(diff.creates)
        self._note_matches(entity, diff)
        pairs = diff.present_pairs(entity)
        current = await current_rows(ctx, entity, [k for _, k in pairs])
        exact = ctx.request.kind == "restore"
        for row, target_key in pairs:
            now, wanted = current.get(target_key), ctx.transformer.apply(entity, row)
            fields = changed_fields(entity, wanted, now, exact=exact)
            if not fields or now is None:
                counts.existing += 1
                self._note(entity, [row], "skip")
                continue
            if not exact:
                counts.conflict += 1
                fields = self._decide(entity, target_key, wanted, now, fields)
            if fields:
                diff.updates.append((target_key, fields))
                diff.before[target_key] = before_image(entity, now, fields)
                counts.update += 1
                self._note(entity, [row], "update", ", ".join(fields))
        return diff

    def _decide(self, entity: Entity, key: Any, wanted: Row, current: Row,
                fields: dict[str, Any]) -> dict[str, Any]:
        """The fields an import writes over a conflicting record (none: the target's stays)."""
        request = self.ctx.request
        if self._resolver is not None:
            return self._resolved(entity, key, wanted, current)
        if request.on_conflict == "update":
            return fields
        if request.on_conflict == "error":
            self._conflict_count += 1
            if len(self.conflicts) < MAX_LISTED:
                self.conflicts.append(f"{entity.name} {key}: {', '.join(fields)} differ")
        self._note_keys(entity.name, [key], "conflict", f"{', '.join(fields)} differ; target's kept")
        return {}

    def _resolved(self, entity: Entity, key: Any, wanted: Row, current: Row) -> dict[str, Any]:
        assert self._resolver is not None
        columns = entity.columns
        chosen = self._resolver.resolve(entity.name, dict(zip(columns, current)), dict(zip(columns, wanted)))
        if chosen is None:
            self._note_keys(entity.name, [key], "conflict", "resolver kept the target's")
            return {}
        unknown = [c for c in chosen if c not in columns]
        if unknown:
            raise InputError(f"--resolver {self.ctx.request.resolver}: returned field '{unknown[0]}' "
                             f"that entity '{entity.name}' does not have")
        merged = tuple(chosen.get(c, v) if c != entity.key else v for c, v in zip(columns, current))
        return changed_fields(entity, merged, current, exact=True)

    async def _plan_deletes(self) -> None:
        """Restore: records of the archive's entities that the archive does not have (by key,
        or matched by natural key) are deleted, children first, whole rows journaled."""
        ctx = self.ctx
        for name in reversed(ctx.tree):
            entity = ctx.schema.entity(name)
            matched = set(ctx.transformer.remaps.get(name, {}).values())
            after = None
            while rows := await ctx.target.select_page(entity, (), after, self._chunk):
                after = key_of(entity, rows[-1])
                kept = await ctx.source.existing_keys(entity, [key_of(entity, r) for r in rows])
                gone = [r for r in rows if key_of(entity, r) not in kept and key_of(entity, r) not in matched]
                self.summary.entity(name).delete += len(gone)
                self._note(entity, gone, "delete")
                for entry in emit.delete_entries(entity, emit.order_self_references(entity, gone)[::-1], ctx.target_json_columns(name)):
                    await self.sink.add(entry)
                if len(rows) < self._chunk:
                    break


async def _no_parents(selected: dict[str, list[Row]]) -> Parents:
    return Parents()

