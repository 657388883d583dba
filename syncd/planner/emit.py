"""Entry emission: the group's decisions as journal entries, in dependency order (blob
copies first, then each entity in schema order, self-referencing rows after the rows they
point at), at most BATCH rows each."""
from __future__ import annotations

from typing import Any, Collection, Iterator, Mapping, Sequence

from ..errors import SchemaError
from ..payload import json_positions
from ..plan import FILES, PlannedEntry
from ..records import field_value
from ..schema import Entity
from ..stores.base import Patch, Row
from .context import BATCH
from .files import FileCheck
from .keys import batches

FILE_COLUMNS = ["src", "dst", "size", "crc32c", "generation"]


def file_entries(copies: list[FileCheck], size: int = BATCH) -> Iterator[PlannedEntry]:
    rows = [[c.src, c.dst, c.planned.size, c.planned.crc32c, c.planned.generation] for c in copies]
    for batch in batches(rows, size):
        yield PlannedEntry(FILES, "copy", FILE_COLUMNS, [r[0] for r in batch], batch)


def match_entries(entity: Entity, remaps: dict[Any, Any], size: int = BATCH) -> Iterator[PlannedEntry]:
    """Natural-key matches (source key → target key), journaled so `audit` and `show -v` can
    say which target record a source record became."""
    pairs = [[source, target] for source, target in remaps.items()]
    for batch in batches(pairs, size):
        yield PlannedEntry(entity.name, "match", ["source_key", "target_key"], [p[0] for p in batch], batch)


def clone_entries(entity: Entity, new_keys: dict[Any, Any], size: int = BATCH) -> Iterator[PlannedEntry]:
    """The new keys of cloned records (source key → clone's key), journaled before the clones
    so `audit` can name a record's clones and a clone's origin."""
    pairs = [[old, new] for old, new in new_keys.items()]
    for batch in batches(pairs, size):
        yield PlannedEntry(entity.name, "clone", ["source_key", "clone_key"], [p[0] for p in batch], batch)


def create_entries(entity: Entity, rows: Sequence[Row], json_columns: Collection[str] = (),
                   size: int = BATCH) -> Iterator[PlannedEntry]:
    """`json_columns`: the target's, whose values are hashed as canonical JSON (the applier
    hashes what it finds on resume by the same columns)."""
    columns, at = list(entity.columns), entity.index(entity.key)
    json_at = json_positions(columns, json_columns)
    for batch in batches(rows, size):
        yield PlannedEntry(entity.name, "create", columns, [r[at] for r in batch], batch, json_at)


def delete_entries(entity: Entity, rows: Sequence[Row], json_columns: Collection[str] = (),
                   size: int = BATCH) -> Iterator[PlannedEntry]:
    """Rows are the records as they are now, whole: the before-image a revert puts back, and
    the hash a revert checks the record against."""
    for entry in create_entries(entity, rows, json_columns, size):
        entry.op = "delete"
        yield entry


def update_entries(entity: Entity, patches: Sequence[Patch], before: Mapping[Any, dict[str, Any]] | None = None,
                   json_columns: Collection[str] = (), size: int = BATCH) -> Iterator[PlannedEntry]:
    """Rows [key, fields], or [key, fields, before] with the before-image of those fields
    (the values they had when planned) where the planner knows it: what a revert puts back."""
    columns = ["key", "fields"] if before is None else ["key", "fields", "before"]
    for batch in batches(patches, size):
        rows = [[k, f] if before is None else [k, f, before[k]] for k, f in batch]
        yield PlannedEntry(entity.name, "update", columns, [k for k, _ in batch], rows,
                           json_columns=frozenset(json_columns))


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
        if start not in done:
            _visit(entity, start, parents, by_key, done, out)
    return out


def _visit(entity: Entity, start: Any, parents: dict[Any, list[Any]], by_key: dict[Any, Row],
           done: set[Any], out: list[Row]) -> None:
    """Depth-first from start with an explicit stack: parents are emitted before children."""
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
