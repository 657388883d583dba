"""Selection: the roots in pages (keyset order), and each page's children in the tree."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator

from ..filters import Filter
from ..schema import Entity
from ..stores.base import Row
from .context import CHUNK, PlanContext
from .keys import key_of, sorted_keys


@dataclass
class Mark:
    """The last root selected, in (column, key) order: where an incremental job's next run
    starts. Only incremental requests have one."""

    column: str
    value: Any
    key: Any

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "value": self.value, "key": self.key}


Page = tuple[list[Row], "Mark | None", dict[str, Any], bool]


async def root_pages(ctx: PlanContext, chunk: int = CHUNK,
                     start: dict[str, Any] | None = None) -> AsyncIterator[Page]:
    """Roots in key order, or for an incremental request in (column, key) order from just
    past its mark, so a limit cuts the selection at a point the next run starts from. Each
    page comes with the mark it moves to, the cursor after it ({after, left}: where a
    planner resumed from that page's checkpoint starts again, `start`), and whether more
    pages may follow (False when this one is known to be the last)."""
    left, column = ctx.request.limit, ctx.request.incremental
    after: Any = ctx.request.after
    if start is not None:
        left, after = start["left"], start["after"]
        after = tuple(after) if isinstance(after, list) else after  # (value, key), as JSON gave it
    key_at = ctx.root.index(ctx.root.key)
    column_at = ctx.root.index(column) if column else None
    while left is None or left > 0:
        size = chunk if left is None else min(chunk, left)
        rows = await ctx.source.select_page(ctx.root, ctx.filters, after, size, order_by=column)
        if not rows:
            return
        last = rows[-1]
        mark = None
        if column is not None and column_at is not None:
            mark = Mark(column, last[column_at], last[key_at])
        if left is not None:
            left -= len(rows)
        after = last[key_at] if mark is None else (mark.value, mark.key)
        more = len(rows) == size and (left is None or left > 0)
        yield rows, mark, {"after": after, "left": left}, more
        if not more:
            return


async def select_tree(ctx: PlanContext, roots: list[Row]) -> dict[str, list[Row]]:
    """The group: its roots and, entity by entity down the tree, their children."""
    selected = {ctx.root.name: roots}
    for child in ctx.tree[1:]:
        selected[child] = await children(ctx, ctx.schema.entity(child), selected)
    return selected


async def children(ctx: PlanContext, entity: Entity, selected: dict[str, list[Row]]) -> list[Row]:
    """The group's children of this entity, by every reference linking them to the tree."""
    found = dict[Any, Row]()
    key_at = entity.index(entity.key)
    for ref in ctx.schema.link(entity.name, ctx.tree):
        parents = selected.get(ref.target)
        if not parents:
            continue
        parent = ctx.schema.entity(ref.target)
        at = parent.index(parent.key)
        rows = await ctx.source.select_all(entity, [Filter(ref.field, "in", [r[at] for r in parents])])
        found.update((row[key_at], row) for row in rows)
    return [found[k] for k in sorted_keys(found)]


async def declared_tree(ctx: PlanContext, roots: list[Row]) -> dict[str, list[Row]]:
    """As select_tree, but each child found only through its reference to an entity that
    declares it a child, when it has one (clone and move: a deployment belongs to its project,
    not to every project whose device it uses); else through every reference into the tree
    (a segmentation through its annotation run)."""
    selected = {ctx.root.name: roots}
    for child in ctx.tree[1:]:
        entity = ctx.schema.entity(child)
        links = ctx.schema.link(child, ctx.tree)
        declared = [r for r in links if child in ctx.schema.entity(r.target).children]
        found: dict[Any, Row] = {}
        for ref in declared or links:
            if not selected.get(ref.target):
                continue
            parent = ctx.schema.entity(ref.target)
            keys = [key_of(parent, r) for r in selected[ref.target]]
            rows = await ctx.source.select_all(entity, [Filter(ref.field, "in", keys)])
            found.update((key_of(entity, r), r) for r in rows)
        selected[child] = [found[k] for k in sorted_keys(found)]
    return selected

