"""The served environment: its SQLite store, and its tables as the API addresses them.

The server knows nothing of syncd.toml's entity settings (natural keys, JSON references...):
those are the caller's. It serves every table with a single-column primary key, or only those
the environment's `serve_entities` names, and builds per request the view the caller asks for
(the columns it wants, in its order). Tables it does not serve do not exist for callers.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from types import MappingProxyType
from typing import Collection, Sequence

from ..errors import SchemaError
from ..schema import Entity, TableInfo
from ..stores.base import RecordStore
from .errors import ApiError


# Any record store can be served: the registry (syncd/stores/__init__.py) opens it.
ServedStore = RecordStore


class Catalog:
    """Tables as described at startup (or at the last GET /schema), and views of them.

    `served`: the only tables served (empty: all); the others are left out of everything.
    """

    def __init__(self, tables: list[TableInfo], served: Collection[str] = ()) -> None:
        if served:
            tables = [t for t in tables if t.name in served]
        self.tables = tables
        self._entities = {t.name: _entity(t) for t in tables if len(t.primary_key) == 1}
        self._unkeyed = {t.name for t in tables} - set(self._entities)
        self.view = lru_cache(maxsize=256)(self._view)

    @property
    def names(self) -> list[str]:
        return sorted(self._entities)

    def entity(self, name: str) -> Entity:
        if name in self._unkeyed:
            raise ApiError(404, f"table {name!r} has no single-column primary key; "
                                "it cannot be served")
        try:
            return self._entities[name]
        except KeyError:
            raise ApiError(404, f"no entity {name!r} (entities: "
                                f"{', '.join(self.names) or 'none'})") from None

    def _view(self, name: str, columns: tuple[str, ...]) -> Entity:
        """The entity with rows in the caller's column order."""
        entity = self.entity(name)
        check_columns(entity, columns)
        return entity if columns == entity.columns else replace(entity, columns=columns)


def check_served(tables: Sequence[TableInfo], served: Sequence[str], where: str) -> None:
    """Every name in `served` (the `where` setting) is an entity of the database, and the
    entities it names reference only one another: a client cannot use one without the other."""
    entities = {t.name: t for t in tables if len(t.primary_key) == 1}
    for name in served:
        if name not in entities:
            raise SchemaError(f"{where}: no entity {name!r} in the database (entities: "
                              f"{', '.join(sorted(entities)) or 'none'})")
    for name in served:
        for column, other, _ in entities[name].foreign_keys:
            if other not in served:
                raise SchemaError(f"{where}: {name}.{column} references {other!r}, which is "
                                  "not listed; list it too")


def check_columns(entity: Entity, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in entity.types:
            raise SchemaError(f"unknown field {column!r} on entity {entity.name!r}")
    if len(set(columns)) != len(columns):
        raise SchemaError(f"a column is named twice in {list(columns)}")


def _entity(table: TableInfo) -> Entity:
    return Entity(table.name, table.primary_key[0], tuple(c.name for c in table.columns),
                  MappingProxyType({c.name: c for c in table.columns}))
