"""The planner: selection → children → parent closure → diff against the target → entries.

It only reads (source and target) and hands entries to a sink (the journal, or nothing for a
dry run). It works one group of root records at a time, so memory follows the chunk size,
not the selection: only the keys of parents already decided are remembered across groups.
Within a group, entries come out in dependency order: blob copies first, then each entity
in schema order, self-referencing records after the records they point at.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Protocol, Sequence

import anyio

from . import blobs
from .errors import Interrupted, SchemaError
from .filters import Filter
from .plan import FILES, PlannedEntry, PlanRequest, PlanSummary, RecordAction
from .records import decode_json, field_value
from .schema import Entity, Reference, Schema, get_in
from .stores.base import Patch, RecordStore, Row
from .tasks import task_group
from .transforms import Transformer, is_uri

CHUNK = 4000  # root records per group: bounds memory
BATCH = 20000  # rows per entry: one target transaction each (fewer commits, faster)


class PlanSink(Protocol):
    async def add(self, entry: PlannedEntry) -> None: ...


@dataclass
class PlanContext:
    request: PlanRequest
    source: RecordStore
    target: RecordStore
    schema: Schema
    root: Entity
    filters: tuple[Filter, ...]
    tree: tuple[str, ...]  # (root,) for copy; root + children for transfer
    transformer: Transformer
    file_workers: int = blobs.DEFAULT_FILE_WORKERS


@dataclass
class _Diff:
    creates: list[Row] = field(default_factory=list)
    same_key: list[Row] = field(default_factory=list)  # already in the target under the same key
    updates: list[Patch] = field(default_factory=list)


class Planner:
    def __init__(self, ctx: PlanContext, sink: PlanSink, *, verbose: bool = False,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.ctx = ctx
        self.sink = sink
        self.summary = PlanSummary()
        self.actions: list[RecordAction] | None = [] if verbose else None
        self._stopping = stopping
        self._known: dict[str, set[Any]] = {}  # parents decided in earlier groups
        # A child found through its only link to the tree has that parent by construction.
        links = {c: ctx.schema.link(c, ctx.tree) for c in ctx.tree[1:]}
        self._selected_by = {(c, refs[0].field) for c, refs in links.items() if len(refs) == 1}
        for name in involved_entities(ctx.schema, ctx.tree):
            self.summary.entity(name)

    async def run(self) -> PlanSummary:
        async for roots in self._root_pages():
            if self._stopping():
                raise Interrupted(0)
            await self._plan_group(roots)
        return self.summary

    async def _root_pages(self) -> AsyncIterator[list[Row]]:
        """Roots in key order, or for an incremental request in (column, key) order from just
        past its mark, so a limit cuts the selection at a point the next run starts from."""
        ctx, left, column = self.ctx, self.ctx.request.limit, self.ctx.request.incremental
        after: Any = ctx.request.after
        key_at = ctx.root.index(ctx.root.key)
        column_at = ctx.root.index(column) if column else None
        while left is None or left > 0:
            size = CHUNK if left is None else min(CHUNK, left)
            rows = await ctx.source.select_page(ctx.root, ctx.filters, after, size, order_by=column)
            if not rows:
                return
            yield rows
            if left is not None:
                left -= len(rows)
            last = rows[-1]
            after = last[key_at] if column_at is None else (last[column_at], last[key_at])
            if column_at is not None:
                self.summary.mark = {"column": column, "value": last[column_at], "key": last[key_at]}
            if len(rows) < size:
                return

    async def _plan_group(self, roots: list[Row]) -> None:
        schema = self.ctx.schema
        selected = {self.ctx.root.name: roots}
        for child in self.ctx.tree[1:]:
            selected[child] = await self._children(schema.entity(child), selected)
        deps = await self._closure(selected)
        diffs: dict[str, _Diff] = {}
        for name in schema.order:
            rows = deps.get(name, []) + selected.get(name, [])
            if rows:
                self.summary.entity(name).selected += len(selected.get(name, ()))
                self.summary.entity(name).dependencies += len(deps.get(name, ()))
                diffs[name] = await self._diff(schema.entity(name), rows)
        await self._emit_files(diffs)
        for name, diff in diffs.items():
            await self._emit_records(schema.entity(name), diff)

    # -- selection ------------------------------------------------------------

    async def _children(self, entity: Entity, selected: dict[str, list[Row]]) -> list[Row]:
        """The group's children of this entity, by every reference linking them to the tree."""
        schema, found = self.ctx.schema, dict[Any, Row]()
        key_at = entity.index(entity.key)
        for ref in schema.link(entity.name, self.ctx.tree):
            parents = selected.get(ref.target)
            if not parents:
                continue
            parent = schema.entity(ref.target)
            at = parent.index(parent.key)
            rows = await self.ctx.source.select_all(entity, [Filter(ref.field, "in", [r[at] for r in parents])])
            found.update((row[key_at], row) for row in rows)
        return [found[k] for k in _sorted_keys(found)]  # key order: target inserts stay local

    async def _closure(self, selected: dict[str, list[Row]]) -> dict[str, list[Row]]:
        """Every parent the group needs that no earlier group decided, recursively."""
        present = _KeySets(self.ctx.schema, selected)
        deps: dict[str, list[Row]] = {}
        frontier = selected
        while wanted := self._missing_parents(frontier, present):
            frontier = {}
            for name, keys in wanted.items():
                rows = await self.ctx.source.fetch(self.ctx.schema.entity(name), _sorted_keys(keys))
                self._known.setdefault(name, set()).update(keys)
                present[name].update(keys)
                deps.setdefault(name, []).extend(rows)
                frontier[name] = rows
        return deps

    def _missing_parents(self, frontier: dict[str, list[Row]],
                         present: "_KeySets") -> dict[str, set[Any]]:
        wanted: dict[str, set[Any]] = {}
        for name, rows in frontier.items():
            entity = self.ctx.schema.entity(name)
            refs = [r for r in entity.references if (name, r.field) not in self._selected_by]
            for ref, values in zip(refs, reference_values(entity, rows, refs)):
                have, known = present[ref.target], self._known.get(ref.target, set())
                missing = {v for v in values if v is not None and v not in have and v not in known}
                if missing:
                    wanted.setdefault(ref.target, set()).update(missing)
        return wanted

    # -- diff against the target ---------------------------------------------------

    async def _diff(self, entity: Entity, rows: list[Row]) -> _Diff:
        ctx, counts, diff = self.ctx, self.summary.entity(entity.name), _Diff()
        at = entity.index(entity.key)
        existing = await ctx.target.existing_keys(entity, [r[at] for r in rows])
        absent = [r for r in rows if r[at] not in existing]
        matched = await self._match_natural(entity, absent)
        diff.same_key = [r for r in rows if r[at] in existing]
        diff.creates = [r for r in absent if r[at] not in matched] if matched else absent
        counts.existing += len(rows) - len(diff.creates)
        counts.create += len(diff.creates)
        self._note(entity, diff.same_key, "skip")
        self._note(entity, [r for r in absent if r[at] in matched], "match")
        if ctx.request.update and entity.name == ctx.root.name:
            pairs = [(r, r[at]) for r in diff.same_key]
            pairs += [(r, matched[r[at]]) for r in absent if r[at] in matched]
            diff.updates = await self._updates(entity, pairs)
            counts.update += len(diff.updates)
        return diff

    async def _match_natural(self, entity: Entity, rows: list[Row]) -> dict[Any, Any]:
        """Source key → target key for records the target has under their natural key."""
        if not entity.natural_key or not rows:
            return {}
        at = [entity.index(c) for c in entity.natural_key]
        wanted = {tuple(r[i] for i in at): _key(entity, r) for r in rows}
        wanted.pop(tuple(None for _ in at), None)
        found = await self.ctx.target.match_natural(entity, list(wanted))
        matched = {wanted[nk]: target_key for nk, target_key in found.items()}
        for source_key, target_key in matched.items():
            self.ctx.transformer.remap(entity.name, source_key, target_key)
        return matched

    async def _updates(self, entity: Entity, pairs: list[tuple[Row, Any]]) -> list[Patch]:
        if not pairs:
            return []
        current = {_key(entity, r): r for r in await self.ctx.target.fetch(entity, [k for _, k in pairs])}
        patches = []
        for row, target_key in pairs:
            wanted = self.ctx.transformer.apply(entity, row)
            fields = changed_fields(entity, wanted, current.get(target_key))
            if fields:
                patches.append((target_key, fields))
                self._note(entity, [row], "update", ", ".join(fields))
        return patches

    # -- emitting entries --------------------------------------------------------------

    async def _emit_files(self, diffs: dict[str, _Diff]) -> None:
        ctx = self.ctx
        if not (ctx.request.copy_files and ctx.transformer.rewriter):
            return
        pairs: dict[str, str] = {}
        for name, diff in diffs.items():
            entity = ctx.schema.entity(name)
            for row in diff.creates + diff.same_key:
                for f in entity.blob_fields:
                    uri = field_value(entity, row, f)
                    if is_uri(uri):
                        pairs.setdefault(uri, ctx.transformer.rewriter.rewrite(uri))
        rows = await self._check_files(pairs)
        # The source's size, crc32c and generation as planned: the copy is pinned to them
        # and verified against them (a file source has no checksum until it is read).
        for batch in _batches(rows, BATCH):
            await self.sink.add(PlannedEntry(FILES, "copy", ["src", "dst", "size", "crc32c", "generation"],
                                             [r[0] for r in batch], batch))

    async def _check_files(self, pairs: dict[str, str]) -> list[list[Any]]:
        """Compare each source with its target by fingerprint, file_workers at a time. Every
        bucket involved must be reachable first: an InputError here stops planning before the
        plan is sealed, so nothing is applied."""
        await anyio.to_thread.run_sync(blobs.check_buckets, [*pairs, *pairs.values()])
        limiter = anyio.CapacityLimiter(self.ctx.file_workers)
        verdicts: dict[str, tuple[str, blobs.Planned]] = {}

        async def check(src: str, dst: str) -> None:
            verdicts[src] = await anyio.to_thread.run_sync(file_verdict, src, dst, limiter=limiter)

        async with task_group() as tg:
            for src, dst in pairs.items():
                tg.start_soon(check, src, dst)
        rows, files = [], self.summary.files
        for src, dst in pairs.items():
            verdict, planned = verdicts[src]
            if verdict == "conflict" and not self.ctx.request.update:
                files.conflict += 1
                self._note_file(src, "conflict", f"{dst} holds other bytes (use --update)")
            elif verdict == "existing":
                files.existing += 1
                self._note_file(src, "skip", dst)
            else:
                files.copy += 1
                rows.append([src, dst, planned.size, planned.crc32c, planned.generation])
                self._note_file(src, "copy", dst)
        return rows

    async def _emit_records(self, entity: Entity, diff: _Diff) -> None:
        transformer = self.ctx.transformer
        rows = diff.creates
        if transformer.touches(entity):
            rows = [transformer.apply(entity, r) for r in rows]
        rows = order_self_references(entity, rows)
        self._note(entity, rows, "create")
        columns, at = list(entity.columns), entity.index(entity.key)
        for batch in _batches(rows, BATCH):
            await self.sink.add(PlannedEntry(entity.name, "create", columns, [r[at] for r in batch], batch))
        for batch in _batches(diff.updates, BATCH):
            await self.sink.add(PlannedEntry(entity.name, "update", ["key", "fields"],
                                             [k for k, _ in batch], [[k, f] for k, f in batch]))

    def _note(self, entity: Entity, rows: Iterable[Row], action: str, note: str = "") -> None:
        if self.actions is not None:
            self.actions.extend(RecordAction(entity.name, _key(entity, r), action, note) for r in rows)

    def _note_file(self, src: str, action: str, note: str) -> None:
        if self.actions is not None:
            self.actions.append(RecordAction(FILES, src, action, note))


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


def file_verdict(src: str, dst: str) -> tuple[str, blobs.Planned]:
    """copy | existing | conflict, and what the source holds (size None: it is missing, and
    its copy will fail and be journaled). Compares fingerprints, never downloads."""
    source = blobs.retrying(lambda: blobs.stat(src))
    if source is None:
        return "copy", blobs.Planned(None)
    planned = blobs.Planned(source.size, source.crc32c, source.generation)
    target = blobs.retrying(lambda: blobs.stat(dst))
    if target is None:
        return "copy", planned
    if blobs.same(src, dst, source, target):
        return "existing", planned
    return "conflict", planned


def changed_fields(entity: Entity, wanted: Row, current: Row | None) -> dict[str, Any]:
    """Fields whose value differs, ignoring the key and compare_ignore; JSON compared as data."""
    if current is None:
        return {}
    out = {}
    for i, column in enumerate(entity.columns):
        if column == entity.key or column in entity.compare_ignore:
            continue
        a, b = wanted[i], current[i]
        if column in entity.json_columns:
            same = decode_json(a) == decode_json(b)
        else:
            same = a == b
        if not same:
            out[column] = a
    return out


def order_self_references(entity: Entity, rows: list[Row]) -> list[Row]:
    """Rows pointing at other rows of the same batch come after them (parent_id → id).

    Iterative (a chain of parents can be longer than Python's recursion limit); a cycle in
    the data is refused, since no order could satisfy it.
    """
    refs = [r.field for r in entity.references if r.target == entity.name]
    if not refs or len(rows) < 2:
        return rows
    at = entity.index(entity.key)
    by_key = {r[at]: r for r in rows}
    parents = {k: [p for f in refs if (p := field_value(entity, r, f)) in by_key and p != k]
               for k, r in by_key.items()}
    done: set[Any] = set()
    out: list[Row] = []
    for start in by_key:
        if start in done:
            continue
        path, on_path = [start], {start}
        while path:
            key = path[-1]
            todo = [p for p in parents[key] if p not in done]
            if not todo:
                done.add(key)
                out.append(by_key[key])
                path.pop()
                on_path.discard(key)
                continue
            if todo[0] in on_path:
                chain = " → ".join(map(str, (*path[path.index(todo[0]):], todo[0])))
                raise SchemaError(f"{entity.name}: records reference each other in a cycle: {chain}")
            path.append(todo[0])
            on_path.add(todo[0])
    return out


def involved_entities(schema: Schema, tree: Sequence[str]) -> list[str]:
    """The tree and every entity it can reach through references, in schema order."""
    seen, todo = set(tree), list(tree)
    while todo:
        for parent in schema.parents(todo.pop()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return [name for name in schema.order if name in seen]


def _key(entity: Entity, row: Row) -> Any:
    return row[entity.index(entity.key)]


def _sorted_keys(keys: Iterable[Any]) -> list[Any]:
    try:
        return sorted(keys)
    except TypeError:  # mixed key types: any stable order will do
        return sorted(keys, key=repr)


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
