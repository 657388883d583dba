"""In-memory record store: tables as Python dicts, for unit tests that need no SQLite file.

What eventsourcing's POPO recorder and httpx's MockTransport are to their projects: the real
port (`base.RecordStore`), no I/O. A test declares a small world in a few lines:

    store = MemoryStore.from_tables("prod", {
        "sites": Table(["id INTEGER", "name TEXT NOT NULL"]),
        "devices": Table(["id TEXT", "site_id INTEGER", "serial TEXT", "meta JSON"],
                         foreign_keys={"site_id": "sites"}),
    }, rows={
        "sites": [{"id": 1, "name": "Lyon"}],
        "devices": [{"id": "d1", "site_id": 1, "serial": "0042", "meta": {"owner": "ops"}}],
    })

Values behave as in the SQLite store, because the planner is unit-tested against this store and
run against that one (tests/test_memory_store.py runs the same assertions on both, and
compares them on random values of every kind). As SQLite 3.40 does:
- a column's declared type gives it SQLite's affinity, applied on write ("7" in an INTEGER
  column is 7, 7 in a TEXT column is "7") and to the value it is compared with;
- values of different kinds order NULL < numbers < text < blobs; text compares by code point;
- JSON columns hold JSON text (`from_tables` encodes decoded values with `json.dumps`); dot paths
  read them as `json_extract` does (true/false → 1/0, objects → JSON text, no affinity);
- LIKE folds ASCII case only and never matches a blob; `ne`/`nin` match NULL (`IS NOT`);
- fetch, existing_keys and match_natural look keys up as the SQLite store's
  `IN (SELECT value FROM json_each(?))` does: keys are JSON-encoded, and only a numeric key column
  turns "7" into 7;
- writes are transactions rolled back on any error; NOT NULL, primary keys and foreign keys to a
  table's key are enforced (the SQLite store turns foreign keys on when it writes);
- errors are SQLite's: the same FilterError and SchemaError, PermanentError ("memory: ...")
  wherever SQLite would fail.

Known differences: a NULL primary key is refused (SQLite allows one in a non-INTEGER key); an
entity's key must be its table's primary key; an object or array reached by a dot path is
re-serialised by `json.dumps` (SQLite minifies the stored text, keeping spellings such as 1.50);
no DEFAULT or CHECK; foreign keys to a column other than the key are described, not enforced;
malformed JSON in a row that another filter already excludes may raise in one store and not in
the other (SQLite's query plan decides which filter it tests first). Every call scans its
table: this store is for small worlds.
"""
from __future__ import annotations

import json
import re
import string
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import anyio.lowlevel
import msgspec

from ..errors import PermanentError, SchemaError
from ..filters import Filter, to_sql
from ..schema import Column, Entity, TableInfo, get_in
from .base import Patch, Row

__all__ = ["MemoryStore", "Table"]

StoredRow = dict[str, Any]  # column → value, every column of the table
Predicate = Callable[[StoredRow], bool]

_JSON_TYPES = frozenset({"JSON", "JSONB"})  # as sqlite_describe: dot paths may reach into them
_json = msgspec.json.Encoder()


# ---------------------------------------------------------------------------- declaring tables

@dataclass(frozen=True)
class Table:
    """A table as a test declares it.

    columns       "name [TYPE] [NOT NULL]", TYPE as in CREATE TABLE (it sets the affinity;
                  untyped columns keep values as given), or `schema.Column`s
    key           the primary-key column; None: the first column; (): no primary key; a tuple:
                  a composite key (such tables are described, build_schema ignores them)
    foreign_keys  column → the table whose key it references, or (table, column)
    json_columns  columns declared JSON, a shortcut for "name JSON"
    """

    columns: Sequence[str | Column]
    key: str | tuple[str, ...] | None = None
    foreign_keys: Mapping[str, str | tuple[str, str]] = field(default_factory=dict)
    json_columns: Collection[str] = ()

    def described(self) -> tuple[tuple[Column, ...], tuple[str, ...]]:
        """Its columns and primary key, as `describe` reports them."""
        columns = tuple(_column(spec, self.json_columns) for spec in self.columns)
        names = [c.name for c in columns]
        if self.key is None:
            key: tuple[str, ...] = (names[0],)
        else:
            key = (self.key,) if isinstance(self.key, str) else tuple(self.key)
        declared = [*key, *self.foreign_keys, *self.json_columns]
        for name in declared:
            if name not in names:
                raise ValueError(f"{name!r} is not one of the columns {names}")
        return columns, key


def _column(spec: str | Column, json_columns: Collection[str]) -> Column:
    if isinstance(spec, Column):
        return spec
    name, *words = spec.split()
    notnull = [w.upper() for w in words[-2:]] == ["NOT", "NULL"]
    declared = " ".join(words[:-2] if notnull else words).upper()
    if name in json_columns:
        if declared not in ("", *_JSON_TYPES):
            raise ValueError(f"JSON column {name!r} is declared {declared}")
        declared = declared or "JSON"
    return Column(name, declared, notnull, declared in _JSON_TYPES)


@dataclass
class _Table:
    info: TableInfo
    key: str | None  # the single-column primary key; None when composite or absent
    rowid: bool  # INTEGER PRIMARY KEY: an alias of the rowid (integers only; NULL → the next)
    affinity: dict[str, str]
    parents: tuple[tuple[str, str], ...]  # (column, table) for foreign keys to a table's key
    rows: dict[Any, StoredRow] = field(default_factory=dict)  # storage key → row

    def affinity_of(self, column: str) -> str:
        try:
            return self.affinity[column]
        except KeyError:
            raise PermanentError(f"memory: no such column: {self.info.name}.{column}") from None


def _tables(specs: Mapping[str, Table]) -> dict[str, _Table]:
    described = {name: spec.described() for name, spec in specs.items()}
    tables: dict[str, _Table] = {}
    for name, spec in specs.items():
        columns, key = described[name]
        fks = tuple(sorted(_foreign_key(col, target, described)
                           for col, target in spec.foreign_keys.items()))
        single = key[0] if len(key) == 1 else None
        tables[name] = _Table(
            info=TableInfo(name, columns, key, fks),
            key=single,
            rowid=single is not None and _type(columns, single).upper() == "INTEGER",
            affinity={c.name: affinity(c.type) for c in columns},
            parents=tuple((col, other) for col, other, other_col in fks
                          if other in described and described[other][1] == (other_col,)),
        )
    return tables


def _foreign_key(column: str, target: str | tuple[str, str],
                 described: Mapping[str, tuple[tuple[Column, ...], tuple[str, ...]]]
                 ) -> tuple[str, str, str]:
    if isinstance(target, tuple):
        return column, *target
    if target not in described or len(described[target][1]) != 1:
        raise ValueError(f"foreign key {column!r}: {target!r} is not a table with a single-column "
                         "key; name the column as (table, column)")
    return column, target, described[target][1][0]


def _type(columns: Sequence[Column], name: str) -> str:
    return next(c.type for c in columns if c.name == name)


# ---------------------------------------------------------------------------- the store

class MemoryStore:
    """The RecordStore port over Python dicts; see the module docstring for its semantics."""

    def __init__(self, name: str, tables: Mapping[str, Table], *, readonly: bool = False) -> None:
        self.name = name
        self.readonly = readonly
        self._specs = dict(tables)
        self._tables = _tables(self._specs)
        self._closed = False

    @classmethod
    def from_tables(cls, name: str, tables: Mapping[str, Table],
                    rows: Mapping[str, Iterable[Mapping[str, Any] | Sequence[Any]]] | None = None,
                    *, readonly: bool = False) -> MemoryStore:
        store = cls(name, tables, readonly=readonly)
        store.load(rows or {})
        return store

    # -- for tests: filling and reading the world directly -------------------------------

    def load(self, rows: Mapping[str, Iterable[Mapping[str, Any] | Sequence[Any]]]) -> None:
        """Add rows (mappings, or sequences in column order) as a bulk import would: affinity,
        NOT NULL and keys apply, foreign keys do not (a source may hold dangling references).
        A JSON column takes JSON text, or a decoded value that is encoded with `json.dumps`;
        so does any column for a dict or a list."""
        for name, items in rows.items():
            table = self._table(name)
            for item in items:
                row = dict.fromkeys(table.affinity) | self._converted(table, _loaded(table, item))
                key = self._admit(table, row)
                if key in table.rows:
                    raise PermanentError(f"memory: UNIQUE constraint failed: {name}.{table.key}")
                table.rows[key] = row

    def rows(self, name: str) -> list[dict[str, Any]]:
        """Copies of a table's rows, in key order."""
        table = self._table(name)
        rows = [dict(row) for row in table.rows.values()]
        key = table.key
        return sorted(rows, key=lambda r: _order(r[key])) if key else rows

    def copy(self, name: str, *, readonly: bool | None = None) -> MemoryStore:
        """Another store holding the same rows (e.g. a target that starts as the source)."""
        clone = MemoryStore(name, self._specs,
                            readonly=self.readonly if readonly is None else readonly)
        for table_name, table in self._tables.items():
            clone._tables[table_name].rows = {k: dict(r) for k, r in table.rows.items()}
        return clone

    # -- the RecordStore port ----------------------------------------------------------

    async def describe(self) -> list[TableInfo]:
        await self._ready()
        return [self._tables[name].info for name in sorted(self._tables)]

    async def select_page(
        self, entity: Entity, filters: Sequence[Filter], after: Any | None, limit: int,
        order_by: str | None = None,
    ) -> list[Row]:
        await self._ready()
        table = self._entity_table(entity)
        tests = _predicates(filters, entity, table)
        if order_by is not None and order_by not in entity.columns:
            raise SchemaError(f"cannot order {entity.name!r} by {order_by!r}: not a column")
        past = _past(table, entity.key, order_by, after)
        if order_by is None:  # SQLite seeks the key's index past `after`, then tests filters
            rows = [r for r in table.rows.values() if past(r) and all(t(r) for t in tests)]
        else:  # no index on the column: every row, filters first (as the WHERE is written)
            rows = [r for r in table.rows.values() if all(t(r) for t in tests) and past(r)]
        rows.sort(key=lambda r: (_order(r[order_by]) if order_by else (), _order(r[entity.key])))
        return _project(entity, rows if limit < 0 else rows[:limit])  # LIMIT -1: no limit

    async def select_all(self, entity: Entity, filters: Sequence[Filter]) -> list[Row]:
        await self._ready()
        table = self._entity_table(entity)
        tests = _predicates(filters, entity, table)
        return _project(entity, [r for r in table.rows.values() if all(t(r) for t in tests)])

    async def fetch(self, entity: Entity, keys: Sequence[Any]) -> list[Row]:
        await self._ready()
        table = self._entity_table(entity)
        rows = self._found(table, keys)
        return _project(entity, sorted(rows, key=lambda r: _order(r[entity.key])))

    async def existing_keys(self, entity: Entity, keys: Sequence[Any]) -> set[Any]:
        await self._ready()
        table = self._entity_table(entity)
        return {row[entity.key] for row in self._found(table, keys)}

    async def max_key(self, entity: Entity) -> int | None:
        await self._ready()
        keys = [row[entity.key] for row in self._entity_table(entity).rows.values()]
        return max((k for k in keys if isinstance(k, int) and not isinstance(k, bool)), default=None)

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        """One transaction: the tables as they were are put back if the block fails."""
        await self._ready()
        saved = {name: {k: dict(row) for k, row in t.rows.items()} for name, t in self._tables.items()}
        try:
            yield
        except BaseException:
            for name, rows in saved.items():
                self._tables[name].rows = rows
            raise

    async def count(self, entity: Entity, filters: Sequence[Filter]) -> int:
        return len(await self.select_all(entity, filters))

    async def match_natural(
        self, entity: Entity, values: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], Any]:
        await self._ready()
        table = self._entity_table(entity)
        natural = entity.natural_key
        for column in natural:
            table.affinity_of(column)
        firsts = set(_probes([v[0] for v in values], table.affinity[natural[0]])) - {None}
        wanted = set(values)
        found: dict[tuple[Any, ...], Any] = {}
        for row in table.rows.values():
            got = tuple(row[c] for c in natural)
            if got in wanted and got[0] in firsts:  # the SQL's IN, then the SQLite store's check
                found[got] = row[entity.key]
        return found

    async def create(self, entity: Entity, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> list[bool]:
        """The SQLite store's steps: insert all; on a constraint error insert the absent ones."""
        await self._ready()
        table = self._writable(entity)
        names = list(columns)
        for name in names:
            table.affinity_of(name)  # an unknown column fails the statement, rows or not
        try:
            with _transaction() as undo:
                for row in rows:
                    self._insert(table, names, row, undo)
            return [True] * len(rows)
        except _ConstraintError:
            pass  # some exist now (a retried entry, a concurrent writer): check them one by one
        key_at = names.index(entity.key)
        with _transaction() as undo:
            present = {row[entity.key] for row in self._found(table, [r[key_at] for r in rows])}
            for row in rows:
                if row[key_at] not in present:
                    self._insert(table, names, row, undo)
        return [r[key_at] not in present for r in rows]

    async def update(self, entity: Entity, patches: Sequence[Patch]) -> list[bool]:
        """True where the key exists, even if the values were already equal (SQLite's rowcount
        counts the rows matched)."""
        await self._ready()
        table = self._writable(entity)
        with _transaction() as undo:
            return [self._patch(table, key, fields, undo) for key, fields in patches]

    async def delete(self, entity: Entity, keys: Sequence[Any]) -> list[bool]:
        await self._ready()
        table = self._writable(entity)
        with _transaction() as undo:
            return [self._remove(table, key, undo) for key in keys]

    async def close(self) -> None:
        self._closed = True

    # -- tables -------------------------------------------------------------------------

    async def _ready(self) -> None:
        # a real store yields to the event loop on every call: so does this one, so a test
        # meets the same interleavings and cancellation points
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise PermanentError(f"memory: store {self.name!r} is closed")

    def _table(self, name: str) -> _Table:
        try:
            return self._tables[name]
        except KeyError:
            raise PermanentError(f"memory: no such table: {name}") from None

    def _entity_table(self, entity: Entity) -> _Table:
        table = self._table(entity.name)
        if entity.key != table.key:
            raise PermanentError(f"memory: {entity.name}.{entity.key} is not the table's "
                                 "single-column primary key")
        for column in entity.columns:
            table.affinity_of(column)
        return table

    def _writable(self, entity: Entity) -> _Table:
        table = self._entity_table(entity)
        if self.readonly:
            raise PermanentError("memory: attempt to write a readonly database")
        return table

    def _found(self, table: _Table, keys: Sequence[Any]) -> list[StoredRow]:
        """Rows with these keys, once each: the SQLite store's `IN (SELECT … json_each(?))`."""
        assert table.key is not None
        found = {}
        for probe in _probes(keys, table.affinity[table.key]):
            row = table.rows.get(probe) if probe is not None else None
            if row is not None:
                found[id(row)] = row
        return list(found.values())

    # -- writes ---------------------------------------------------------------------------

    def _insert(self, table: _Table, names: list[str], values: Sequence[Any],
                undo: _Undo) -> None:
        if len(values) != len(names):
            raise PermanentError(f"memory: Incorrect number of bindings supplied. The current "
                                 f"statement uses {len(names)}, and there are {len(values)} supplied.")
        row = dict.fromkeys(table.affinity) | self._converted(table, dict(zip(names, values)))
        key = self._admit(table, row)
        if key in table.rows:
            raise _ConstraintError(f"memory: UNIQUE constraint failed: {table.info.name}.{table.key}")
        undo.put(table.rows, key, row)
        self._check_parents(table, row)

    def _patch(self, table: _Table, key: Any, fields: Mapping[str, Any], undo: _Undo) -> bool:
        assert table.key is not None
        if not fields:
            raise PermanentError('memory: near "WHERE": syntax error')  # UPDATE t SET WHERE …
        old = self._row_at(table, key)
        if old is None:
            return False
        row = old | self._converted(table, fields)
        new_key, old_key = self._admit(table, row), old[table.key]
        if new_key != old_key:
            if new_key in table.rows:
                raise _ConstraintError(f"memory: UNIQUE constraint failed: "
                                       f"{table.info.name}.{table.key}")
            undo.drop(table.rows, old_key)
            self._check_children(table, old_key)
        undo.put(table.rows, new_key, row)
        self._check_parents(table, row)
        return True

    def _remove(self, table: _Table, key: Any, undo: _Undo) -> bool:
        assert table.key is not None
        row = self._row_at(table, key)
        if row is None:
            return False
        undo.drop(table.rows, row[table.key])
        self._check_children(table, row[table.key])
        return True

    @staticmethod
    def _row_at(table: _Table, key: Any) -> StoredRow | None:
        """The row `WHERE key = ?` finds: the key column's affinity applies to the value."""
        assert table.key is not None
        probe = _compared(_bindable(key), table.affinity[table.key])
        return table.rows.get(probe) if probe is not None else None

    @staticmethod
    def _converted(table: _Table, values: Mapping[str, Any]) -> StoredRow:
        return {c: _with_affinity(_bindable(v), table.affinity_of(c)) for c, v in values.items()}

    @staticmethod
    def _admit(table: _Table, row: StoredRow) -> Any:
        """The row's storage key, once NOT NULL and the key's own rules hold."""
        if table.rowid:
            assert table.key is not None
            if row[table.key] is None:  # SQLite picks the next rowid
                row[table.key] = 1 + max(table.rows, default=0)
            if not isinstance(row[table.key], int):
                raise _ConstraintError("memory: datatype mismatch")
        for column in table.info.columns:
            if column.notnull and row[column.name] is None:
                raise _ConstraintError(f"memory: NOT NULL constraint failed: "
                                       f"{table.info.name}.{column.name}")
        if table.key is None:  # described only: composite keys as tuples, keyless rows counted
            pk = table.info.primary_key
            return tuple(row[c] for c in pk) if pk else len(table.rows)
        if row[table.key] is None:
            raise PermanentError(f"memory: NULL primary key {table.info.name}.{table.key} "
                                 "(SQLite allows it; the memory store keys rows by it)")
        return row[table.key]

    def _check_parents(self, table: _Table, row: StoredRow) -> None:
        for column, target in table.parents:
            parent = self._tables[target]
            assert parent.key is not None
            value = row[column]  # SQLite looks it up with the parent key's affinity
            if value is not None and _with_affinity(value, parent.affinity[parent.key]) \
                    not in parent.rows:
                raise _ConstraintError("memory: FOREIGN KEY constraint failed")

    def _check_children(self, table: _Table, key: Any) -> None:
        """Nothing may still reference a key that is gone (foreign keys are NO ACTION)."""
        assert table.key is not None
        key_affinity = table.affinity[table.key]
        for child in self._tables.values():
            for column, target in child.parents:
                if target == table.info.name and any(
                        _cmp(_with_affinity(row[column], key_affinity), key) == 0
                        for row in child.rows.values()):
                    raise _ConstraintError("memory: FOREIGN KEY constraint failed")


class _ConstraintError(PermanentError):
    """What sqlite3.IntegrityError is to the SQLite store: create retries past it."""


class _Undo:
    """The prior state of every row a transaction touched, restored in reverse on error."""

    def __init__(self) -> None:
        self._log: list[tuple[dict[Any, StoredRow], Any, StoredRow | None]] = []

    def put(self, rows: dict[Any, StoredRow], key: Any, row: StoredRow) -> None:
        self._log.append((rows, key, rows.get(key)))
        rows[key] = row

    def drop(self, rows: dict[Any, StoredRow], key: Any) -> None:
        self._log.append((rows, key, rows.pop(key)))

    def rollback(self) -> None:
        for rows, key, old in reversed(self._log):
            if old is None:
                rows.pop(key, None)
            else:
                rows[key] = old


@contextmanager
def _transaction() -> Iterator[_Undo]:
    undo = _Undo()
    try:
        yield undo
    except BaseException:
        undo.rollback()
        raise


def _loaded(table: _Table, item: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    columns = [c.name for c in table.info.columns]
    if isinstance(item, Mapping):
        values = dict(item)
        for name in values:
            table.affinity_of(name)
    elif len(item) != len(columns):
        raise ValueError(f"{table.info.name}: {len(item)} values for columns {columns}")
    else:
        values = dict(zip(columns, item))
    return {c: json.dumps(v) if _decoded(table, c, v) else v for c, v in values.items()}


def _decoded(table: _Table, column: str, value: Any) -> bool:
    """A decoded JSON value: any object or array (no SQL value is one, so a TEXT column that
    config's json_columns marks takes them too), or any non-text value in a JSON column."""
    if isinstance(value, (dict, list)):
        return True
    declared_json = any(c.is_json for c in table.info.columns if c.name == column)
    return declared_json and value is not None and not isinstance(value, (str, bytes))


def _project(entity: Entity, rows: Iterable[StoredRow]) -> list[Row]:
    return [tuple(row[c] for c in entity.columns) for row in rows]


def _past(table: _Table, key: str, order_by: str | None, after: Any | None) -> Predicate:
    """The SQLite store's keyset condition: past `after` by key, or by (column, key) with the
    rows whose column is NULL left out."""
    if order_by is None:
        if after is None:
            return lambda row: True
        last = _compared(_bindable(after), table.affinity[key])
        return lambda row: _greater(row[key], last)
    if after is None:
        return lambda row: row[order_by] is not None
    mark = _compared(_bindable(after[0]), table.affinity[order_by])
    last = _compared(_bindable(after[1]), table.affinity[key])
    # (column > ? OR (column = ? AND key > ?)); a NULL column compares as NULL: left out
    return lambda row: (c := _cmp(row[order_by], mark)) is not None and (
        c > 0 or c == 0 and _greater(row[key], last))


def _greater(a: Any, b: Any) -> bool:
    return (_cmp(a, b) or 0) > 0


# ---------------------------------------------------------------------------- filters

def _predicates(filters: Sequence[Filter], entity: Entity, table: _Table) -> list[Predicate]:
    to_sql(filters, entity)  # the SQLite store's validation: the same FilterError, same filters
    return [_predicate(flt, table) for flt in filters]


def _predicate(flt: Filter, table: _Table) -> Predicate:
    column, path = flt.field.column, flt.field.path
    if path:
        # json_extract's result has no affinity: the filter's value is compared as it is
        test = _test(flt.op, flt.value, "BLOB")
        return lambda row: test(_json_extract(row[column], path))
    test = _test(flt.op, flt.value, table.affinity_of(column))
    return lambda row: test(row[column])


_ORDERINGS: dict[str, Callable[[int], bool]] = {
    "eq": lambda c: c == 0, "gt": lambda c: c > 0, "gte": lambda c: c >= 0,
    "lt": lambda c: c < 0, "lte": lambda c: c <= 0,
}


def _test(op: str, value: Any, affinity: str) -> Callable[[Any], bool]:
    """The SQL of filters.py for one op, on one value (None is NULL)."""
    if op == "isnull":
        return (lambda v: v is None) if value else (lambda v: v is not None)
    if op == "like":
        pattern = _bindable(value)  # no affinity: LIKE compares text
        return lambda v: _like(v, pattern)
    if op in ("in", "nin"):
        items = [_compared(_bindable(item), affinity) for item in value]
        if op == "in":
            return lambda v: _member(v, items) is True
        return lambda v: v is None or _member(v, items) is False  # "v IS NULL OR v NOT IN (…)"
    other = _compared(_bindable(value), affinity)
    if op == "ne":  # IS NOT: NULL is a value that differs from every other
        return lambda v: not (v is None and other is None or _cmp(v, other) == 0)
    ordering = _ORDERINGS[op]
    return lambda v: (c := _cmp(v, other)) is not None and ordering(c)


def _member(value: Any, items: list[Any]) -> bool | None:
    """SQL's IN: NULL when the value is NULL, or absent from a list that holds a NULL."""
    if value is None:
        return None
    if any(_cmp(value, item) == 0 for item in items):
        return True
    return None if None in items else False


# ---------------------------------------------------------------------------- SQLite values

_NUMERIC = frozenset({"INTEGER", "REAL", "NUMERIC"})
_SPACE = " \t\n\v\f\r"
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT64 = range(-2**63, 2**63)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def affinity(declared: str) -> str:
    """SQLite's affinity of a declared type (https://sqlite.org/datatype3.html §3.1)."""
    declared = declared.upper()
    if "INT" in declared:
        return "INTEGER"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in declared or not declared:
        return "BLOB"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _bindable(value: Any) -> Any:
    """A Python value as sqlite3 binds it: bool → int, NaN → NULL, dates → ISO text."""
    if value is None or isinstance(value, (str, bytes)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if value not in _INT64:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return value
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, datetime):  # the adapters Python 3.11's sqlite3 registers
        return value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    raise PermanentError(f"memory: Error binding parameter: type {type(value).__name__!r} "
                         "is not supported")


def _compared(value: Any, affinity: str) -> Any:
    """A value compared with a column of this affinity: a TEXT column makes numbers text, a
    numeric one makes numeric text a number (NUMERIC's rules, even for REAL: no int → real)."""
    if affinity == "TEXT":
        return _text(value)
    if affinity in _NUMERIC and isinstance(value, str):
        number = _as_number(value)
        return value if number is None else number
    return value


def _with_affinity(value: Any, affinity: str) -> Any:
    """The value as a column of this affinity stores it."""
    if value is None or isinstance(value, bytes) or affinity == "BLOB":
        return value
    if affinity == "TEXT":
        return _text(value)
    number = _as_number(value) if isinstance(value, str) else value
    if number is None:
        return value  # text that is no number stays text, even in an INTEGER column
    if affinity == "REAL":
        return float(number)
    return _integral(number) if isinstance(number, float) else number


def _as_number(text: str) -> int | float | None:
    """The number a text spells under NUMERIC affinity (spaces around allowed), else None."""
    body = text.strip(_SPACE)
    if not _NUMBER.fullmatch(body):
        return None
    if _INTEGER.fullmatch(body) and int(body) in _INT64:
        return int(body)
    return _integral(float(body))


def _integral(number: float) -> int | float:
    """A real that is exactly a 64-bit integer becomes one ("3.0e+5" is 300000)."""
    if number.is_integer() and -2.0**63 <= number < 2.0**63:
        return int(number)
    return number


def _text(value: Any) -> Any:
    """Numbers as SQLite writes them as text; other values unchanged."""
    if isinstance(value, float):
        if value in (float("inf"), float("-inf")):
            return "Inf" if value > 0 else "-Inf"
        mantissa, e, exponent = f"{value:.15g}".partition("e")  # SQLite's "%!.15g"
        mantissa = "0" if value == 0 else mantissa  # no "-0.0"
        return mantissa + ("" if "." in mantissa else ".0") + e + exponent
    return str(value) if isinstance(value, int) else value


def _rank(value: Any) -> int:
    """Storage classes in SQLite's order: NULL, numbers, text, blobs."""
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return 1
    return 2 if isinstance(value, str) else 3


def _cmp(a: Any, b: Any) -> int | None:
    """-1, 0 or 1 as SQLite compares (text by code point, as BINARY); None if either is NULL."""
    if a is None or b is None:
        return None
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    return -1 if a < b else 1 if a > b else 0


def _order(value: Any) -> tuple[int, Any]:
    """A sort key in SQLite's ORDER BY order."""
    return (0, 0) if value is None else (_rank(value), value)


def _as_text(value: Any) -> str:
    return str(_text(value))


def _like(value: Any, pattern: Any) -> bool:
    """SQLite's LIKE: % and _, no escape, ASCII letters case-insensitive. NULL never matches,
    nor does a blob (Python's SQLite is built with SQLITE_LIKE_DOESNT_MATCH_BLOBS)."""
    if value is None or pattern is None or isinstance(value, bytes) or isinstance(pattern, bytes):
        return False
    return _like_regex(_as_text(pattern)).fullmatch(_as_text(value).translate(_ASCII_LOWER)) is not None


@lru_cache(maxsize=256)
def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c)
             for c in pattern.translate(_ASCII_LOWER))
    return re.compile("".join(parts), re.DOTALL)


def _json_extract(stored: Any, path: tuple[str, ...]) -> Any:
    """`json_extract(column, '$.a.b')`: NULL when a step is missing or not an object."""
    if stored is None:
        return None
    if stored in (float("inf"), float("-inf")):
        raise PermanentError("memory: malformed JSON")  # SQLite writes infinity as "Inf"
    if isinstance(stored, (int, float)):  # a number stored in a JSON column is JSON too
        return _sql_value(get_in(stored, path))
    try:  # SQLite 3.40 reads a blob as UTF-8 JSON text (3.45 would read it as JSONB)
        text = stored.decode("utf-8") if isinstance(stored, bytes) else stored
        document = json.loads(text, parse_constant=_not_json)
    except ValueError:
        raise PermanentError("memory: malformed JSON") from None
    return _sql_value(get_in(document, path))


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN and Infinity; SQLite does not


def _sql_value(value: Any) -> Any:
    """A decoded JSON value as json_extract and json_each return it."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, int) and value not in _INT64:
        return float(value)
    return value


def _probes(keys: Sequence[Any], affinity: str) -> list[Any]:
    """Keys as `IN (SELECT value FROM json_each(?))` meets them: JSON-encoded as the SQLite
    store sends them, and only a numeric column applies its affinity (SQLite compares a TEXT
    column with json_each's values as they are)."""
    values = [_sql_value(v) for v in msgspec.json.decode(_json.encode(list(keys)))]
    if affinity in _NUMERIC:
        return [_compared(v, affinity) for v in values]
    return values
