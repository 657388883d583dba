"""Diff against the target: which rows are there already (same key, or same natural key),
which must be created, and (with --update) which fields differ.

Pure reads of the target; nothing here changes the transformer: natural-key matches come
back as a map (source key → target key) that the caller hands to the transformer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..records import decode_json
from ..schema import Entity
from ..stores.base import Patch, Row
from .context import PlanContext
from .keys import key_of


@dataclass
class Diff:
    creates: list[Row] = field(default_factory=list)
    same_key: list[Row] = field(default_factory=list)  # in the target under the same key
    matched: list[Row] = field(default_factory=list)  # in the target under their natural key
    remaps: dict[Any, Any] = field(default_factory=dict)  # matched: source key → target key
    updates: list[Patch] = field(default_factory=list)
    before: dict[Any, dict[str, Any]] = field(default_factory=dict)  # updated key → old values

    @property
    def existing(self) -> int:
        return len(self.same_key) + len(self.matched)

    def present_pairs(self, entity: Entity) -> list[tuple[Row, Any]]:
        """(source row, target key) of every row the target already has."""
        return ([(r, key_of(entity, r)) for r in self.same_key]
                + [(r, self.remaps[key_of(entity, r)]) for r in self.matched])


async def diff_rows(ctx: PlanContext, entity: Entity, rows: list[Row]) -> Diff:
    at = entity.index(entity.key)
    existing = await ctx.target.existing_keys(entity, [r[at] for r in rows])
    absent = [r for r in rows if r[at] not in existing]
    remaps = await match_natural(ctx, entity, absent)
    return Diff(creates=[r for r in absent if r[at] not in remaps],
                same_key=[r for r in rows if r[at] in existing],
                matched=[r for r in absent if r[at] in remaps], remaps=remaps)


async def match_natural(ctx: PlanContext, entity: Entity, rows: list[Row]) -> dict[Any, Any]:
    """Source key → target key for records the target has under their natural key."""
    if not entity.natural_key or not rows:
        return {}
    at = [entity.index(c) for c in entity.natural_key]
    wanted = {tuple(r[i] for i in at): key_of(entity, r) for r in rows}
    wanted.pop(tuple(None for _ in at), None)  # no natural key: nothing to match by
    found = await ctx.target.match_natural(entity, list(wanted))
    return {wanted[nk]: target_key for nk, target_key in found.items()}


async def update_patches(ctx: PlanContext, entity: Entity,
                         pairs: list[tuple[Row, Any]]) -> list[tuple[Row, Patch, dict[str, Any]]]:
    """For each (source row, target key), the fields whose transformed value differs from
    the target's current one, and their current values (the before-image a revert puts
    back); rows with nothing to change are left out."""
    if not pairs:
        return []
    current = await current_rows(ctx, entity, [k for _, k in pairs])
    patches = []
    for row, target_key in pairs:
        now = current.get(target_key)
        fields = changed_fields(entity, ctx.transformer.apply(entity, row), now)
        if fields and now is not None:
            patches.append((row, (target_key, fields), before_image(entity, now, fields)))
    return patches


async def current_rows(ctx: PlanContext, entity: Entity, keys: list[Any]) -> dict[Any, Row]:
    return {key_of(entity, r): r for r in await ctx.target.fetch(entity, keys)}


def before_image(entity: Entity, current: Row, fields: dict[str, Any]) -> dict[str, Any]:
    return {c: current[entity.index(c)] for c in fields}


def changed_fields(entity: Entity, wanted: Row, current: Row | None, *,
                   exact: bool = False) -> dict[str, Any]:
    """Fields whose value differs, ignoring the key and (unless exact: restore makes records
    equal) compare_ignore; JSON compared as data."""
    if current is None:
        return {}
    out = {}
    for i, column in enumerate(entity.columns):
        if column == entity.key or column in entity.compare_ignore and not exact:
            continue
        a, b = wanted[i], current[i]
        same = decode_json(a) == decode_json(b) if column in entity.json_columns else a == b
        if not same:
            out[column] = a
    return out
