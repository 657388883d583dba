"""Clone: the selected roots and their included children become NEW records under new keys.

Reuses the transfer planner's steps: selection pages the roots, the closure and diff handle
parents outside the clone when the target is another environment (in the same environment
they are there already and stay as they are). What is clone's own:

- new keys, decided here and journaled (a resumed clone writes the same ones): a UUID for
  UUID-like text keys, the next free integers above the target's largest key for integer
  keys (`KeyAllocator`);
- references among cloned records point at the clones (the transformer's remaps);
- `--set FIELD=VALUE` on the cloned roots;
- children are found through the reference to the entity that declares them as children
  (`selection.declared_tree`: a deployment is cloned with its project, not with a device it
  shares with another project's deployment);
- a `clone` entry per batch journals source key → new key, so `audit` names a record's
  clones and a clone's origin.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from ..errors import InputError
from ..plan import RecordAction
from ..records import with_fields
from ..schema import Column, Entity, Schema
from ..stores.base import KeyRange, Row
from . import emit
from .context import PlanContext
from .keys import key_of
from .planner import Planner
from .selection import declared_tree

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def clone_tree(schema: Schema, root: Entity, include: Sequence[str]) -> tuple[str, ...]:
    """The root and the children cloned with it, in dependency order: `include` (each below
    the root) or, by default, the root's children, recursively."""
    below = schema.tree(root.name)
    for name in include:
        schema.entity(name)  # an unknown entity is named as such
        if name not in below[1:]:
            raise InputError(f"--include: {name!r} is not below {root.name!r} "
                             f"(its children: {', '.join(below[1:]) or 'none'})")
    return below if not include else (root.name, *(n for n in below if n in include))


def typed_assignments(entity: Entity, texts: Sequence[str]) -> dict[str, Any]:
    """`FIELD=VALUE` → {column: value typed by the column's declared type}."""
    out: dict[str, Any] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise InputError(f"--set {text!r}: expected FIELD=VALUE")
        if name not in entity.types:
            raise InputError(f"--set: unknown field {name!r} on entity {entity.name!r}")
        if name == entity.key:
            raise InputError(f"--set: {name!r} is the key, which clone chooses")
        out[name] = _typed(entity.types[name], value, text)
    return out


def _typed(column: Column, value: str, text: str) -> Any:
    declared = column.type.upper()
    try:
        if "INT" in declared:
            return int(value)
        if any(t in declared for t in ("REAL", "FLOA", "DOUB")):
            return float(value)
        if "BOOL" in declared:
            return {"true": 1, "1": 1, "false": 0, "0": 0}[value.lower()]
        if column.is_json:
            msgspec.json.decode(value)
    except (ValueError, KeyError, msgspec.DecodeError):
        raise InputError(f"--set {text!r}: not a value for {column.name} ({column.type or 'untyped'})") from None
    return value


class KeyAllocator:
    """New keys per entity: integers continue above the target's largest key (read once,
    then counted up across groups); UUID-like text keys get fresh UUIDs."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        self._next: dict[str, int] = {}

    async def new(self, entity: Entity, old: Any) -> Any:
        if isinstance(old, int) and not isinstance(old, bool):
            return await self._next_int(entity)
        if isinstance(old, str) and _UUID.fullmatch(old):
            new = str(uuid.uuid4())
            return new.upper() if old.isupper() else new  # the same spelling as the source's
        raise InputError(f"clone: {entity.name}.{entity.key} = {old!r} is neither an integer nor "
                         "a UUID: syncd cannot make a new key for it")

    async def _next_int(self, entity: Entity) -> int:
        if entity.name not in self._next:
            target = self.ctx.target
            if not isinstance(target, KeyRange):
                raise InputError(f"clone: {target.name} cannot tell its largest {entity.name} key, "
                                 "so new integer keys cannot be chosen there")
            self._next[entity.name] = (await target.max_key(entity) or 0) + 1
        self._next[entity.name] += 1
        return self._next[entity.name] - 1


class ClonePlanner(Planner):
    checkpointed = False  # its plan is sealed whole (architecture §7)

    def __init__(self, ctx: PlanContext, *args: Any, **kwargs: Any) -> None:
        super().__init__(ctx, *args, **kwargs)
        self._keys = KeyAllocator(ctx)
        self._same_env = ctx.request.source == ctx.request.target

    async def _plan_group(self, roots: list[Row]) -> None:
        selected = await self._select(roots)
        new_keys = await self._allocate(selected)
        if not self._same_env:  # parents outside the clone, resolved as transfer does
            await self._plan_parents(selected)
        for name in self.ctx.schema.order:
            if selected.get(name):
                await self._emit_clones(self.ctx.schema.entity(name), selected[name], new_keys[name])

    async def _select(self, roots: list[Row]) -> dict[str, list[Row]]:
        return await declared_tree(self.ctx, roots)

    async def _allocate(self, selected: dict[str, list[Row]]) -> dict[str, dict[Any, Any]]:
        """Old key → new key for every selected record; the transformer points references
        among the clones at the clones."""
        new_keys: dict[str, dict[Any, Any]] = {}
        for name, rows in selected.items():
            entity = self.ctx.schema.entity(name)
            keys = new_keys[name] = {}
            for row in rows:
                old = key_of(entity, row)
                keys[old] = await self._keys.new(entity, old)
                self.ctx.transformer.remap(name, old, keys[old])
        return new_keys

    async def _plan_parents(self, selected: dict[str, list[Row]]) -> None:
        parents = await self._closure.parents(selected)  # never the cloned records themselves
        for name in self.ctx.schema.order:
            if rows := parents.rows.get(name):
                entity = self.ctx.schema.entity(name)
                self.summary.entity(name).dependencies += len(rows)
                await self._emit_records(entity, await self._diff(entity, rows))

    async def _emit_clones(self, entity: Entity, rows: list[Row], new_keys: dict[Any, Any]) -> None:
        counts = self.summary.entity(entity.name)
        is_root = entity.name == self.ctx.root.name
        counts.selected += len(rows)
        counts.clone += len(rows)
        clones = [self._clone(entity, row, new_keys, is_root) for row in rows]
        clones = emit.order_self_references(entity, clones)
        if self.actions is not None:
            self.actions.extend(RecordAction(entity.name, old, "clone", f"→ {new}")
                                for old, new in new_keys.items())
        for entry in emit.clone_entries(entity, new_keys):
            await self.sink.add(entry)
        for entry in emit.create_entries(entity, clones, self.ctx.target_json_columns(entity.name)):
            await self.sink.add(entry)

    def _clone(self, entity: Entity, row: Row, new_keys: dict[Any, Any], is_root: bool) -> Row:
        changes = {entity.field(entity.key): new_keys[key_of(entity, row)]}
        if is_root:
            changes |= {entity.field(name): value for name, value in self.ctx.assign.items()}
        return self.ctx.transformer.apply(entity, with_fields(entity, row, changes))
