"""Parent closure: every parent a group needs that no earlier group decided, recursively.

The closure remembers the keys of parents decided in earlier groups (only keys: memory
follows the number of distinct parents, not the selection).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..records import decode_json
from ..schema import Entity, Reference, Schema, get_in
from ..stores.base import Row
from .context import PlanContext
from .keys import sorted_keys


@dataclass
class Parents:
    rows: dict[str, list[Row]] = field(default_factory=dict)  # entity → parent rows to plan
    dangling: dict[str, set[Any]] = field(default_factory=dict)  # entity → keys referenced, absent


class ParentClosure:
    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        self.known: dict[str, set[Any]] = {}  # parents decided in earlier groups
        self.fresh: dict[str, set[Any]] = {}  # of those, decided since the last take_fresh()
        # A child found through its only link to the tree has that parent by construction.
        # (Taken entity by entity, records are not found through links: no such shortcut.)
        links = {} if ctx.request.by_entity else {c: ctx.schema.link(c, ctx.tree) for c in ctx.tree[1:]}
        self._selected_by = {(c, refs[0].field) for c, refs in links.items() if len(refs) == 1}

    async def parents(self, selected: dict[str, list[Row]]) -> Parents:
        """The rows of every parent the group needs that no earlier group decided, and the
        referenced keys the source does not have (dangling references, each reported once)."""
        present = _KeySets(self.ctx.schema, selected)
        found = Parents()
        frontier = selected
        while wanted := self._missing(frontier, present):
            frontier = {}
            for name, keys in wanted.items():
                entity = self.ctx.schema.entity(name)
                rows = await self.ctx.source.fetch(entity, sorted_keys(keys))
                self.known.setdefault(name, set()).update(keys)
                self.fresh.setdefault(name, set()).update(keys)
                present[name].update(keys)
                found.rows.setdefault(name, []).extend(rows)
                if len(rows) < len(keys):
                    at = entity.index(entity.key)
                    found.dangling[name] = keys - {r[at] for r in rows}
                frontier[name] = rows
        return found

    def take_fresh(self) -> dict[str, list[Any]]:
        """The parent keys decided since the last call (a checkpoint journals them)."""
        fresh, self.fresh = self.fresh, {}
        return {name: sorted_keys(keys) for name, keys in fresh.items()}

    def restore(self, known: dict[str, list[Any]]) -> None:
        """Parents a cut-off planning decided before its last checkpoint: never planned again."""
        for name, keys in known.items():
            self.known.setdefault(name, set()).update(keys)

    def _missing(self, frontier: dict[str, list[Row]], present: _KeySets) -> dict[str, set[Any]]:
        wanted: dict[str, set[Any]] = {}
        for name, rows in frontier.items():
            entity = self.ctx.schema.entity(name)
            refs = [r for r in entity.references if (name, r.field) not in self._selected_by]
            for ref, values in zip(refs, reference_values(entity, rows, refs)):
                have, known = present[ref.target], self.known.get(ref.target, set())
                missing = {v for v in values if v is not None and v not in have and v not in known}
                if missing:
                    wanted.setdefault(ref.target, set()).update(missing)
        return wanted


class _KeySets(dict[str, set[Any]]):
    """Keys of the group's records per entity, computed only for entities someone asks about."""

    def __init__(self, schema: Schema, selected: dict[str, list[Row]]) -> None:
        super().__init__()
        self._schema, self._selected = schema, selected

    def __missing__(self, name: str) -> set[Any]:
        entity = self._schema.entity(name)
        at = entity.index(entity.key)
        self[name] = keys = {r[at] for r in self._selected.get(name, ())}
        return keys


def reference_values(entity: Entity, rows: list[Row], refs: Sequence[Reference]) -> list[list[Any]]:
    """Per reference, its value in every row; each JSON column is decoded once per row."""
    plain = [entity.index(r.field.column) if not r.field.path else None for r in refs]
    nested = {r.field.column for r in refs if r.field.path}
    out: list[list[Any]] = [[] for _ in refs]
    for row in rows:
        docs = {c: decode_json(row[entity.index(c)]) for c in nested}
        for i, ref in enumerate(refs):
            at = plain[i]
            out[i].append(row[at] if at is not None else get_in(docs[ref.field.column], ref.field.path))
    return out
