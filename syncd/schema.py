"""The entity graph: introspected tables + config overrides → entities, references, order.

Stores describe their tables as `TableInfo`; `build_schema` keeps the tables that can be synced
(a single-column primary key, because keys are preserved across environments and must be
addressable one value at a time), adds what SQL cannot say (JSON-path references, natural keys,
blob fields, children) and orders entities parents first. Everything a user can name is
validated here, so later stages never meet an unknown field.
"""
from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field as dataclass_field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from .config import EntityConfig
from .errors import SchemaError

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # declared type, upper-cased; "" when undeclared
    notnull: bool
    is_json: bool  # declared JSON/JSONB: dot paths may reach into it


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[tuple[str, str, str], ...]  # (column, other_table, other_column)


@dataclass(frozen=True)
class FieldPath:
    """A column, or a path of object keys inside a JSON column (`collection_meta.device_id`)."""

    column: str
    path: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ".".join((self.column, *self.path))

    @property
    def nested(self) -> bool:
        return bool(self.path)

    @property
    def json_path(self) -> str:
        """SQLite JSON path for `path` (`$.device_id`, `$."odd key"`); only for nested fields."""
        return "$" + "".join(
            f".{key}" if _PLAIN_KEY.fullmatch(key) else f'."{key}"' for key in self.path
        )


def get_in(obj: Any, path: Sequence[str]) -> Any:
    """Walk object keys in a decoded JSON value; None when a step is missing or not an object."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def set_in(obj: Any, path: Sequence[str], value: Any) -> Any:
    """A copy of `obj` with `path` set to `value`; missing or non-object steps become objects."""
    if not path:
        return value
    out = dict(obj) if isinstance(obj, Mapping) else {}
    out[path[0]] = set_in(out.get(path[0]), path[1:], value)
    return out


@dataclass(frozen=True)
class Reference:
    field: FieldPath
    target: str
    origin: str  # "sql" | "config"


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    columns: tuple[str, ...]  # rows are tuples in this order
    types: Mapping[str, Column] = dataclass_field(hash=False)
    references: tuple[Reference, ...] = ()
    natural_key: tuple[str, ...] = ()
    blob_fields: tuple[FieldPath, ...] = ()
    children: tuple[str, ...] = ()
    compare_ignore: frozenset[str] = frozenset()

    def field(self, text: str) -> FieldPath:
        """Parse and validate `column` or `json_column.key.key`."""
        if text in self.types:  # checked first so a column whose name has a '.' stays usable
            return FieldPath(text)
        column, *path = text.split(".")
        if column not in self.types:
            raise SchemaError(f"unknown field {column!r} on entity {self.name!r}")
        if path and not self.types[column].is_json:
            raise SchemaError(
                f"field {text!r} on entity {self.name!r}: {column!r} is not a JSON column"
            )
        for key in path:
            # SQLite 3.40's JSON path syntax has no escape for '"' inside a quoted key
            if not key or '"' in key:
                raise SchemaError(f"invalid JSON path {text!r} on entity {self.name!r}")
        return FieldPath(column, tuple(path))

    def index(self, column: str) -> int:
        try:
            return self._positions[column]
        except KeyError:
            raise SchemaError(f"unknown field {column!r} on entity {self.name!r}") from None

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.columns)}

    @property
    def json_columns(self) -> frozenset[str]:
        return frozenset(name for name, col in self.types.items() if col.is_json)

    @property
    def self_references(self) -> tuple[Reference, ...]:
        """References to this same entity (tree-shaped data); the planner orders those rows."""
        return tuple(ref for ref in self.references if ref.target == self.name)


@dataclass(frozen=True)
class Schema:
    entities: Mapping[str, Entity]
    order: tuple[str, ...]  # parents first; ties broken by name
    ignored: Mapping[str, str] = dataclass_field(default_factory=dict)  # table → why not an entity

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            known = ", ".join(self.order) or "none"
            raise SchemaError(f"unknown entity {name!r} (known: {known})") from None

    def parents(self, name: str) -> tuple[str, ...]:
        targets = {ref.target for ref in self.entity(name).references} - {name}
        return tuple(sorted(targets, key=self.rank))

    def rank(self, name: str) -> int:
        self.entity(name)
        return self._ranks[name]

    @cached_property
    def _ranks(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.order)}

    def root(self) -> str:
        """The one entity that declares children and is nobody's child."""
        nested = {child for e in self.entities.values() for child in e.children}
        roots = [n for n in self.order if self.entities[n].children and n not in nested]
        if len(roots) != 1:
            found = ", ".join(roots) if roots else "no entity declares children"
            raise SchemaError(f"cannot choose a root entity ({found}); name one with --entity")
        return roots[0]

    def tree(self, root: str) -> tuple[str, ...]:
        """`root` and its children, recursively, in dependency order."""
        members = {root}
        pending = list(self.entity(root).children)
        while pending:
            child = pending.pop()
            if child not in members:
                members.add(child)
                pending.extend(self.entity(child).children)
        for child in members - {root}:
            self.link(child, members)  # each child must be reachable from the tree
        return tuple(name for name in self.order if name in members)

    def link(self, child: str, tree: Collection[str]) -> tuple[Reference, ...]:
        """The references by which `child` records are found from entities of `tree`."""
        refs = tuple(
            ref for ref in self.entity(child).references
            if ref.target in tree and ref.target != child
        )
        if not refs:
            others = ", ".join(sorted(set(tree) - {child})) or "none"
            raise SchemaError(
                f"child entity {child!r} has no reference to any entity of its tree ({others})"
            )
        return refs


# ---------------------------------------------------------------------------- building

def build_schema(tables: Sequence[TableInfo], entities: Mapping[str, EntityConfig]) -> Schema:
    by_name = {t.name: t for t in tables if not t.name.startswith("sqlite_")}
    ignored = {name: why for name, t in by_name.items() if (why := _why_not_entity(t))}
    for name in entities:
        if name not in by_name:
            raise SchemaError(f"entities.{name}: no table named {name!r}")
        if name in ignored:
            raise SchemaError(f"entities.{name}: {ignored[name]}")
    built = {
        name: _entity(t, entities.get(name, EntityConfig()), by_name, ignored)
        for name, t in sorted(by_name.items()) if name not in ignored
    }
    for entity in built.values():
        for child in entity.children:
            if child not in built:
                raise SchemaError(f"entities.{entity.name}.children: unknown entity {child!r}")
    return Schema(MappingProxyType(built), _order(built), MappingProxyType(ignored))


def _why_not_entity(table: TableInfo) -> str:
    if not table.primary_key:
        return f"table {table.name!r} has no primary key"
    if len(table.primary_key) > 1:
        return (f"table {table.name!r} has a composite primary key "
                f"({', '.join(table.primary_key)}); only single-column keys are supported")
    return ""


def _entity(table: TableInfo, conf: EntityConfig, tables: Mapping[str, TableInfo],
            ignored: Mapping[str, str]) -> Entity:
    columns = tuple(c.name for c in table.columns)
    where = f"entities.{table.name}"
    unknown = [c for c in conf.json_columns if c not in columns]
    if unknown:
        raise SchemaError(f"{where}.json_columns: unknown column {unknown[0]!r} on entity {table.name!r}")
    # ORMs often declare JSON columns TEXT: json_columns marks them so dot paths reach in
    types = {c.name: replace(c, is_json=True) if c.name in conf.json_columns else c for c in table.columns}
    bare = Entity(table.name, table.primary_key[0], columns, MappingProxyType(types))
    refs = _merge_references(
        _sql_references(table, tables, ignored),
        _config_references(bare, conf.references, tables, ignored),
        where,
    )
    return Entity(
        name=bare.name, key=bare.key, columns=columns, types=bare.types, references=refs,
        natural_key=tuple(_columns(bare, conf.natural_key, f"{where}.natural_key")),
        blob_fields=tuple(_field(bare, text, f"{where}.blob_fields") for text in conf.blob_fields),
        children=tuple(_children(bare, conf.children, f"{where}.children")),
        compare_ignore=frozenset(_columns(bare, conf.compare_ignore, f"{where}.compare_ignore")),
    )


def _sql_references(table: TableInfo, tables: Mapping[str, TableInfo],
                    ignored: Mapping[str, str]) -> list[Reference]:
    refs: list[Reference] = []
    for column, other, other_column in table.foreign_keys:
        where = f"{table.name}.{column} references {other}.{other_column}"
        _check_target(other, tables, ignored, where)
        if (other_column,) != tables[other].primary_key:
            # references are remapped by key; a foreign key to another column cannot be
            raise SchemaError(f"{where}, which is not the primary key of {other!r}")
        refs.append(Reference(FieldPath(column), other, "sql"))
    return refs


def _config_references(entity: Entity, declared: Mapping[str, str],
                       tables: Mapping[str, TableInfo], ignored: Mapping[str, str]) -> list[Reference]:
    refs: list[Reference] = []
    for text, target in declared.items():
        where = f"entities.{entity.name}.references: {text!r} → {target!r}"
        path = _field(entity, text, f"entities.{entity.name}.references")
        _check_target(target, tables, ignored, where)
        refs.append(Reference(path, target, "config"))
    return refs


def _check_target(target: str, tables: Mapping[str, TableInfo],
                  ignored: Mapping[str, str], where: str) -> None:
    if target not in tables:
        raise SchemaError(f"{where}: no table named {target!r}")
    if target in ignored:
        raise SchemaError(f"{where}: {ignored[target]}, so it is not an entity")


def _merge_references(sql: list[Reference], config: list[Reference], where: str) -> tuple[Reference, ...]:
    """Config may repeat what SQL says, never contradict it."""
    by_field = {ref.field: ref for ref in sql}
    for ref in config:
        known = by_field.get(ref.field)
        if known and known.target != ref.target:
            raise SchemaError(
                f"{where}.references: {str(ref.field)!r} → {ref.target!r} contradicts the "
                f"foreign key to {known.target!r}"
            )
        by_field.setdefault(ref.field, ref)
    return tuple(by_field.values())


def _field(entity: Entity, text: str, where: str) -> FieldPath:
    try:
        return entity.field(text)
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}") from None


def _columns(entity: Entity, names: Sequence[str], where: str) -> list[str]:
    for name in names:
        if _field(entity, name, where).nested:
            raise SchemaError(f"{where}: {name!r} is a JSON path; only columns are allowed here")
    return list(names)


def _children(entity: Entity, names: Sequence[str], where: str) -> list[str]:
    if entity.name in names:
        raise SchemaError(f"{where}: an entity cannot be its own child")
    return list(names)  # existence is checked once every entity is built


# ---------------------------------------------------------------------------- order

def _order(entities: Mapping[str, Entity]) -> tuple[str, ...]:
    """Kahn's algorithm; the heap breaks ties by name so the order is deterministic."""
    parents = {name: {r.target for r in e.references} - {name} for name, e in entities.items()}
    waiting = {name: len(p) for name, p in parents.items()}
    dependants: dict[str, list[str]] = {name: [] for name in entities}
    for name, targets in parents.items():
        for target in targets:
            dependants[target].append(name)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for dependant in dependants[name]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(ready, dependant)
    if len(order) < len(entities):
        raise SchemaError(_describe_cycle(entities, parents, set(entities) - set(order)))
    return tuple(order)


def _describe_cycle(entities: Mapping[str, Entity], parents: Mapping[str, set[str]],
                    stuck: set[str]) -> str:
    """Walk parent links among the unordered entities until one repeats: that is a cycle."""
    path = [min(stuck)]
    while True:
        following = min(p for p in parents[path[-1]] if p in stuck)
        if following in path:
            cycle = path[path.index(following):] + [following]
            break
        path.append(following)
    via = ", ".join(
        f"{a}.{ref.field}" for a, b in zip(cycle, cycle[1:])
        for ref in entities[a].references if ref.target == b
    )
    return f"reference cycle: {' → '.join(cycle)} (via {via})"
