"""Describe a SQLite database as `TableInfo`s for `syncd.schema.build_schema`."""
from __future__ import annotations

import sqlite3

import sqlite_utils
from sqlite_utils.db import Column as SqlColumn, Table

from ..schema import Column, TableInfo

_JSON_TYPES = {"JSON", "JSONB"}


def describe(db: sqlite_utils.Database) -> list[TableInfo]:
    hidden = _virtual_and_shadow_tables(db)
    return [
        _table(db.table(name))
        for name in sorted(db.table_names())
        if name not in hidden and not name.startswith("sqlite_")
    ]


def _table(table: Table) -> TableInfo:
    columns = table.columns
    # sqlite-utils reports ["rowid"] for a table without a declared key; rowids are not
    # stable across a VACUUM or an export, so such a table has no key for syncd.
    has_pk = any(col.is_pk for col in columns)
    return TableInfo(
        name=table.name,
        columns=tuple(_column(col) for col in columns),
        primary_key=tuple(table.pks) if has_pk else (),
        foreign_keys=_foreign_keys(table),
    )


def _column(col: SqlColumn) -> Column:
    declared = (col.type or "").strip().upper()
    return Column(col.name, declared, bool(col.notnull), declared in _JSON_TYPES)


def _foreign_keys(table: Table) -> tuple[tuple[str, str, str], ...]:
    # A compound foreign key is listed column by column; build_schema then refuses it, since
    # its target has a composite key or its columns are not the target's key.
    pairs: list[tuple[str, str, str]] = []
    for fk in table.foreign_keys:
        for column, other in zip(fk.columns, fk.other_columns or (None,) * len(fk.columns)):
            pairs.append((column, fk.other_table, other or "rowid"))
    return tuple(sorted(pairs))


def _virtual_and_shadow_tables(db: sqlite_utils.Database) -> set[str]:
    """FTS and other virtual tables and their shadow tables hold no records of their own."""
    try:
        rows = db.execute("PRAGMA main.table_list").fetchall()
    except sqlite3.OperationalError:  # SQLite < 3.37 has no table_list
        return set()
    return {row[1] for row in rows if row[2] in ("virtual", "shadow")}
