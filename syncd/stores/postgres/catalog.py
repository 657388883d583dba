"""What the catalog says about a schema's tables: columns with their Postgres types, primary
keys and foreign keys, as `TableInfo`s for `build_schema` plus the `PgColumn`s the store
needs to read and write each type."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from ...errors import SchemaError
from ...schema import Column, TableInfo

# typname → how values of the type are read, written and compared (see values.py)
_KINDS = {
    "uuid": "uuid", "int2": "int", "int4": "int", "int8": "int", "float4": "float",
    "float8": "float", "numeric": "numeric", "bool": "bool", "date": "date",
    "timestamp": "timestamp", "timestamptz": "timestamptz", "json": "json", "jsonb": "json",
    "bytea": "bytea", "text": "text", "varchar": "text", "bpchar": "text", "name": "text",
    "citext": "text",
}

_COLUMNS = """
SELECT c.relname, a.attname, upper(format_type(a.atttypid, a.atttypmod)), a.attnotnull,
       t.typname, t.typtype, t.typcategory, e.typname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND (%s::text IS NULL OR c.relname = %s)
ORDER BY c.relname, a.attnum
"""
_PRIMARY_KEYS = """
SELECT c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = %s
ORDER BY c.relname, k.ord
"""
_FOREIGN_KEYS = """
SELECT c.relname, a.attname, fn.nspname, fc.relname, fa.attname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class fc ON fc.oid = k.confrelid
JOIN pg_namespace fn ON fn.oid = fc.relnamespace
JOIN LATERAL unnest(k.conkey, k.confkey) AS p(attnum, fattnum) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.attnum
JOIN pg_attribute fa ON fa.attrelid = fc.oid AND fa.attnum = p.fattnum
WHERE k.contype = 'f' AND n.nspname = %s
ORDER BY c.relname, k.conname
"""


@dataclass(frozen=True)
class PgColumn:
    name: str
    type: str  # format_type, upper-cased: "UUID", "TIMESTAMP WITH TIME ZONE", "INTEGER[]"
    kind: str  # uuid int float numeric bool date timestamp timestamptz json bytea text enum array other
    element: str = ""  # an array's element kind


def kind_of(typname: str, typtype: str, typcategory: str) -> str:
    if typcategory == "A":
        return "array"
    if typtype == "e":
        return "enum"
    return _KINDS.get(typname, "other")


async def columns(conn: psycopg.AsyncConnection[Any], schema: str,
                  table: str | None = None) -> dict[str, list[tuple[PgColumn, bool]]]:
    """table → its columns in order, each with its NOT NULL flag."""
    out: dict[str, list[tuple[PgColumn, bool]]] = {}
    cur = await conn.execute(_COLUMNS, [schema, table, table])
    for rel, name, type_, notnull, typname, typtype, category, element in await cur.fetchall():
        kind = kind_of(typname, typtype, category)
        elem = _KINDS.get(element, "other") if element else ""
        out.setdefault(rel, []).append((PgColumn(name, type_, kind, elem), notnull))
    return out


async def describe(conn: psycopg.AsyncConnection[Any], schema: str
                   ) -> tuple[list[TableInfo], dict[str, dict[str, PgColumn]]]:
    """The schema's tables, and each table's columns by name."""
    tables = await columns(conn, schema)
    keys: dict[str, list[str]] = {}
    for rel, column in await (await conn.execute(_PRIMARY_KEYS, [schema])).fetchall():
        keys.setdefault(rel, []).append(column)
    fks: dict[str, list[tuple[str, str, str]]] = {}
    for rel, column, other_schema, other, other_column in await (
            await conn.execute(_FOREIGN_KEYS, [schema])).fetchall():
        if other_schema != schema:
            # References are followed inside one schema: the other schema's rows would need
            # an environment of their own to be copied first.
            raise SchemaError(f"table {rel!r}: {column!r} references {other_schema}.{other} in "
                              f"another schema; syncd follows references within schema "
                              f"{schema!r} only")
        fks.setdefault(rel, []).append((column, other, other_column))
    infos = [_table(name, cols, tuple(keys.get(name, ())), tuple(sorted(fks.get(name, ()))))
             for name, cols in sorted(tables.items())]
    return infos, {name: {c.name: c for c, _ in cols} for name, cols in tables.items()}


def _table(name: str, cols: list[tuple[PgColumn, bool]], key: tuple[str, ...],
           fks: tuple[tuple[str, str, str], ...]) -> TableInfo:
    # A key column's NOT NULL comes with PRIMARY KEY; it is reported as SQLite reports it
    # (not declared), so the same tables describe alike in both stores.
    return TableInfo(name, tuple(
        Column(c.name, c.type, notnull and c.name not in key, c.kind == "json")
        for c, notnull in cols), key, fks)
