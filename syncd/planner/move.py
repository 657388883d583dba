"""Move: re-scope a subset inside one environment (Antenna's move_project_data).

The selected roots and every record below them (their declared children, recursively) that
references the scope entity (e.g. `project_id` → projects) get the new scope. A parent they
reference that sits in the old scope is cloned into the new scope when records staying behind
use it too (the moved records then point at the clone), and reassigned when only moved
records use it; a parent with no scope, or another one, is left alone. `--to S:new` first
creates the scope record as a clone of the old one, with `--set` applied.

Everything is decided here and journaled: the updates carry before-images (the fields as
they were), and the plan's summary carries the checks the applier runs inside its ONE target
transaction before it commits (counts per scope conserved and as planned; no moved record,
nor a parent one points at, left in the old scope).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..filters import Filter
from ..plan import RecordAction
from ..records import with_fields
from ..schema import Entity, Reference
from ..stores.base import Atomic, Row
from . import emit
from .clone import KeyAllocator
from .context import PlanContext
from .keys import key_of, sorted_keys
from .planner import Planner
from .selection import declared_tree, root_pages


@dataclass
class Scope:
    entity: str
    target: Any  # the new scope's key: given, or chosen for `new`
    new: bool  # `--to S:new`: the scope record is created, a clone of the old one


@dataclass
class EntityMove:
    """What the move does to one entity's records."""

    moved: dict[Any, dict[str, Any]] = field(default_factory=dict)  # key → fields to set
    before: dict[Any, dict[str, Any]] = field(default_factory=dict)  # key → those fields as they were
    clones: list[Row] = field(default_factory=list)  # parents cloned into the new scope
    clone_keys: dict[Any, Any] = field(default_factory=dict)
    reassigned: int = 0


def scope_reference(entity: Entity, scope: str) -> Reference | None:
    """The plain column by which `entity` records belong to a scope record."""
    refs = [r for r in entity.references if r.target == scope and not r.field.nested]
    return refs[0] if refs else None


class MovePlanner(Planner):
    """Plans the whole selection at once: the checks need the totals of the move."""

    checkpointed = False  # its plan is sealed whole (architecture §7)

    def __init__(self, ctx: PlanContext, *args: Any, **kwargs: Any) -> None:
        super().__init__(ctx, *args, **kwargs)
        self._keys = KeyAllocator(ctx)
        self._moves: dict[str, EntityMove] = {}

    async def run(self) -> Any:
        scope, old = await self._scope()
        roots = [r async for page, *_ in root_pages(self.ctx) for r in page]
        old = self._old_scope(roots, scope) if old is None else old
        selected = await declared_tree(self.ctx, roots)
        new_scope_row = await self._new_scope_row(scope, old)
        for name, rows in selected.items():
            self.summary.entity(name).selected += len(rows)
            self._move_records(self.ctx.schema.entity(name), rows, scope, old)
        await self._parents(selected, scope, old)
        await self._emit(scope, old, new_scope_row)
        self.summary.move = await self._counts_and_checks(scope, old, selected)
        return self.summary

    # -- the scope ------------------------------------------------------------------------

    async def _scope(self) -> tuple[Scope, Any]:
        text = self.ctx.request.to or ""
        name, sep, key_text = text.partition(":")
        if not sep or not key_text:
            raise InputError(f"--to {text!r}: expected SCOPE_ENTITY:KEY or SCOPE_ENTITY:new")
        entity = self.ctx.schema.entity(name)
        if scope_reference(self.ctx.root, name) is None:
            raise InputError(f"--to: {self.ctx.root.name!r} does not reference {name!r}: "
                             "it cannot be the scope of a move of its records")
        if key_text == "new":
            return Scope(name, None, True), None
        key: Any = int(key_text) if key_text.lstrip("-").isdigit() else key_text
        if not await self.ctx.target.existing_keys(entity, [key]):
            raise InputError(f"--to: no {name} {key_text} in {self.ctx.target.name}")
        if self.ctx.assign:
            raise InputError("--set: only a new scope (--to SCOPE:new) has fields to set")
        return Scope(name, key, False), None

    def _old_scope(self, roots: list[Row], scope: Scope) -> Any:
        ref = scope_reference(self.ctx.root, scope.entity)
        assert ref is not None  # checked by _scope
        values = {r[self.ctx.root.index(ref.field.column)] for r in roots}
        if not values:
            raise InputError("the selection is empty: nothing to move")
        if len(values) > 1:
            shown = ", ".join(map(repr, sorted_keys(values)))
            raise InputError(f"the selection spans several scopes ({shown}): move one at a time")
        (old,) = values
        if old is None:
            raise InputError("the selected records have no scope: nothing to move them from")
        return old

    async def _new_scope_row(self, scope: Scope, old: Any) -> Row | None:
        if not scope.new:
            if scope.target == old:
                raise InputError(f"--to: the selection is already in {scope.entity} {old}")
            return None
        entity = self.ctx.schema.entity(scope.entity)
        (row,) = await self.ctx.source.fetch(entity, [old])
        scope.target = await self._keys.new(entity, old)
        changes = {entity.field(entity.key): scope.target}
        changes |= {entity.field(n): v for n, v in self.ctx.assign.items()}
        return with_fields(entity, row, changes)

    # -- records and their parents -------------------------------------------------------

    def _move_records(self, entity: Entity, rows: list[Row], scope: Scope, old: Any) -> None:
        ref = scope_reference(entity, scope.entity)
        if ref is None:
            return  # belongs to its parent's scope through it: nothing of its own changes
        at = entity.index(ref.field.column)
        move = self._moves.setdefault(entity.name, EntityMove())
        for row in rows:
            if row[at] == old:
                move.moved[key_of(entity, row)] = {ref.field.column: scope.target}
                move.before[key_of(entity, row)] = {ref.field.column: old}

    async def _parents(self, selected: dict[str, list[Row]], scope: Scope, old: Any) -> None:
        """Parents in the old scope that moved records point at: cloned or reassigned."""
        moved_keys = {n: {key_of(self.ctx.schema.entity(n), r) for r in rows} for n, rows in selected.items()}
        for name, rows in selected.items():
            entity = self.ctx.schema.entity(name)
            for ref in entity.references:
                parent = self.ctx.schema.entity(ref.target)
                parent_scope = scope_reference(parent, scope.entity)
                if ref.field.nested or ref.target == scope.entity or parent_scope is None:
                    continue
                keys = {r[entity.index(ref.field.column)] for r in rows} - {None}
                keys -= moved_keys.get(ref.target, set())
                for row in await self.ctx.source.fetch(parent, sorted_keys(keys)):
                    if row[parent.index(parent_scope.field.column)] == old:
                        await self._parent(parent, row, parent_scope, scope, moved_keys, (entity, ref, rows))

    async def _parent(self, parent: Entity, row: Row, parent_scope: Reference, scope: Scope,
                      moved_keys: dict[str, set[Any]], user: tuple[Entity, Reference, list[Row]]) -> None:
        key = key_of(parent, row)
        move = self._moves.setdefault(parent.name, EntityMove())
        if key in move.clone_keys or key in move.moved:
            new_key = move.clone_keys.get(key)
        elif await self._used_by_others(parent, key, moved_keys):
            new_key = move.clone_keys[key] = await self._keys.new(parent, key)
            move.clones.append(with_fields(parent, row, {
                parent.field(parent.key): new_key, parent_scope.field: scope.target}))
        else:
            move.moved[key] = {parent_scope.field.column: scope.target}
            move.before[key] = {parent_scope.field.column: row[parent.index(parent_scope.field.column)]}
            move.reassigned += 1
            new_key = None
        if new_key is not None:  # the moved records that use it point at the clone
            entity, ref, rows = user
            users = self._moves.setdefault(entity.name, EntityMove())
            for r in rows:
                if r[entity.index(ref.field.column)] == key:
                    k = key_of(entity, r)
                    users.moved.setdefault(k, {})[ref.field.column] = new_key
                    users.before.setdefault(k, {})[ref.field.column] = key

    async def _used_by_others(self, parent: Entity, key: Any, moved_keys: dict[str, set[Any]]) -> bool:
        for entity in self.ctx.schema.entities.values():
            for ref in entity.references:
                if ref.target != parent.name or ref.field.nested:
                    continue
                users = await self.ctx.source.select_all(entity, [Filter(ref.field, "eq", key)])
                if any(key_of(entity, u) not in moved_keys.get(entity.name, set()) for u in users):
                    return True
        return False

    # -- entries ------------------------------------------------------------------------------

    async def _emit(self, scope: Scope, old: Any, new_scope_row: Row | None) -> None:
        schema = self.ctx.schema
        if new_scope_row is not None:
            entity = schema.entity(scope.entity)
            self.summary.entity(entity.name).clone += 1
            await self._add(emit.clone_entries(entity, {old: scope.target}))
            await self._add(emit.create_entries(entity, [new_scope_row], self.ctx.target_json_columns(entity.name)))
        for name in schema.order:
            move = self._moves.get(name)
            if move is None:
                continue
            entity = schema.entity(name)
            counts = self.summary.entity(name)
            counts.clone += len(move.clones)
            counts.update += len(move.moved)
            if move.clones:
                await self._add(emit.clone_entries(entity, move.clone_keys))
                await self._add(emit.create_entries(entity, move.clones, self.ctx.target_json_columns(name)))
            self._notes(name, move)
        for name in schema.order:  # updates after every create: moved records may point at clones
            move = self._moves.get(name)
            if move and move.moved:
                patches = [(k, move.moved[k]) for k in sorted_keys(move.moved)]
                await self._add(emit.update_entries(schema.entity(name), patches, move.before,
                                                     self.ctx.target_json_columns(name)))

    async def _add(self, entries: Any) -> None:
        for entry in entries:
            await self.sink.add(entry)

    def _notes(self, name: str, move: EntityMove) -> None:
        if self.actions is None:
            return
        self.actions.extend(RecordAction(name, k, "update", ", ".join(f"{c} → {v}" for c, v in f.items()))
                            for k, f in move.moved.items())
        self.actions.extend(RecordAction(name, k, "clone", f"→ {n}") for k, n in move.clone_keys.items())

    # -- counts and checks -------------------------------------------------------------------

    async def _counts_and_checks(self, scope: Scope, old: Any, selected: dict[str, list[Row]]) -> dict[str, Any]:
        target = self.ctx.target
        if not isinstance(target, Atomic):
            raise InputError(f"move: {target.name} cannot apply a move in one transaction")
        per_entity, checks = {}, []
        for entity in self.ctx.schema.entities.values():
            ref = scope_reference(entity, scope.entity)
            if ref is None:
                continue
            move = self._moves.get(entity.name, EntityMove())
            scoped = sum(1 for f in move.moved.values() if ref.field.column in f)
            old_before = await target.count(entity, [Filter(ref.field, "eq", old)])
            new_before = 0 if scope.new else await target.count(entity, [Filter(ref.field, "eq", scope.target)])
            counts = {"old_before": old_before, "new_before": new_before,
                      "old_after": old_before - scoped, "new_after": new_before + scoped + len(move.clones),
                      "moved": scoped - move.reassigned, "cloned": len(move.clones), "reassigned": move.reassigned}
            per_entity[entity.name] = counts
            checks += [{"entity": entity.name, "field": ref.field.column, "value": old, "count": counts["old_after"]},
                       {"entity": entity.name, "field": ref.field.column, "value": scope.target,
                        "count": counts["new_after"]}]
        checks += self._reference_checks(scope, old, selected)
        return {"scope": scope.entity, "from": old, "to": scope.target, "new": scope.new,
                "entities": per_entity, "checks": checks}

    def _reference_checks(self, scope: Scope, old: Any, selected: dict[str, list[Row]]) -> list[dict[str, Any]]:
        """No parent that a moved record points at, once moved, is in the old scope."""
        checks = []
        for name, rows in selected.items():
            entity = self.ctx.schema.entity(name)
            move = self._moves.get(name, EntityMove())
            for ref in entity.references:
                parent = self.ctx.schema.entity(ref.target)
                parent_scope = scope_reference(parent, scope.entity)
                if ref.field.nested or ref.target == scope.entity or parent_scope is None:
                    continue
                at = entity.index(ref.field.column)
                keys = {move.moved.get(key_of(entity, r), {}).get(ref.field.column, r[at]) for r in rows} - {None}
                if keys:
                    checks.append({"entity": parent.name, "field": parent_scope.field.column, "value": old,
                                   "keys": sorted_keys(keys), "count": 0, "referenced_by": name})
        return checks
