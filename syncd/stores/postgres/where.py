"""Filters (syncd/filters.py) compiled to parameterised Postgres SQL.

Every name is a `sql.Identifier`, every value and JSON path a bound parameter. The rules are
the SQLite store's, so a filter selects the same records in both: `ne` and `nin` also match
NULL; `like` is case-insensitive and has no escape character; a dot path reads a JSON value as
`json_extract` does (numbers and booleans as numbers, true = 1, strings as text, JSON null or
a missing key as NULL).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import sql

from ...errors import FilterError, SchemaError
from ...filters import OPS, Filter
from ...schema import Entity, FieldPath
from .catalog import PgColumn
from .values import Unconvertible, any_of, fast_params, param, select_expr

_COMPARE = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
Clause = tuple[sql.Composable, list[Any]]


def where(filters: Sequence[Filter], entity: Entity,
          columns: Mapping[str, PgColumn]) -> Clause:
    """AND of every filter, and its parameters; (TRUE, []) when there is none."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for flt in filters:
        clause, values = _clause(flt, entity, columns)
        parts.append(sql.SQL("({})").format(clause))
        params.extend(values)
    return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")), params


def _clause(flt: Filter, entity: Entity, columns: Mapping[str, PgColumn]) -> Clause:
    _check_field(flt.field, entity, columns)
    if flt.op not in OPS:
        raise FilterError(f"unknown filter op {flt.op!r} (ops: {', '.join(OPS)})")
    column = columns[flt.field.column]
    if flt.op in ("in", "nin") and (not isinstance(flt.value, (list, tuple)) or not flt.value):
        raise FilterError(f"{flt.op} needs a non-empty list for {flt.field}")
    if flt.field.nested:
        return _json_clause(flt, column)
    return _column_clause(flt, column)


def _check_field(field: FieldPath, entity: Entity, columns: Mapping[str, PgColumn]) -> None:
    try:
        valid = entity.field(str(field)) == field  # a Filter may be built by hand
    except SchemaError as exc:
        raise FilterError(str(exc)) from None
    if not valid or field.column not in columns:
        raise FilterError(f"invalid field {str(field)!r} on entity {entity.name!r}")


# -- a column ----------------------------------------------------------------------------------

def _column_clause(flt: Filter, column: PgColumn) -> Clause:
    col: sql.Composable = sql.Identifier(column.name)
    if column.kind == "json":
        col = sql.SQL("{}::text").format(col)  # a whole JSON column compares as its text
    if flt.op == "isnull":
        return sql.SQL("{} IS {}NULL").format(col, sql.SQL("" if flt.value else "NOT ")), []
    if flt.op == "like":
        return _like(sql.SQL("({})::text").format(select_expr(column)), flt.value)
    if flt.op in ("in", "nin"):
        # one array parameter, however many values (the planner finds children by thousands)
        values = fast_params(column, list(flt.value)) if column.kind != "json" else None
        if values is None:
            values = _array([v for v in (_value(column, item) for item in flt.value)
                             if v is not _NEVER])
        if column.kind == "enum":
            col = sql.SQL("{}::text").format(col)  # a label the enum lacks just never matches
        any_sql, param_ = any_of(column, values)
        found = sql.SQL("{} = {}").format(col, any_sql) if values else sql.SQL("FALSE")
        params = [param_] if values else []
        if flt.op == "in":
            return found, params
        return sql.SQL("{} IS NULL OR NOT ({})").format(col, found), params
    value = _value(column, flt.value)
    if flt.op == "ne":
        if value is _NEVER:
            return sql.SQL("TRUE"), []
        return sql.SQL("{} IS DISTINCT FROM %s").format(col), [value]
    if value is _NEVER:
        return sql.SQL("FALSE"), []
    return sql.SQL("{} {} %s").format(col, sql.SQL(_COMPARE[flt.op])), [value]


_NEVER = object()  # a value the column can never equal (text for a uuid column, …)


def _value(column: PgColumn, value: Any) -> Any:
    if column.kind == "json":
        return value if isinstance(value, str) else str(value)
    try:
        return param(column, value)
    except Unconvertible:
        if column.kind in ("int", "float", "numeric", "bool"):
            raise FilterError(f"{column.name}: {value!r} is not a value for {column.type}") from None
        return _NEVER


def _array(values: list[Any]) -> list[Any]:
    """Values of one Python type, so psycopg sends one array type (text goes untyped)."""
    kinds = {type(v) for v in values}
    if len(kinds) > 1:
        return [str(v) for v in values]
    return values


def _like(operand: sql.Composable, pattern: Any) -> Clause:
    return sql.SQL("{} ILIKE %s ESCAPE ''").format(operand), [str(pattern)]


# -- a dot path into JSON ----------------------------------------------------------------------

def _json_clause(flt: Filter, column: PgColumn) -> Clause:
    # Each expression names the path as often as its SQL reads it: one parameter each time.
    path = list(flt.field.path)
    doc = sql.SQL("({}::jsonb #> %s::text[])").format(sql.Identifier(column.name))
    text = (sql.SQL("(CASE WHEN jsonb_typeof({d}) IN ('number', 'boolean') THEN NULL "
                    "ELSE {d} #>> '{{}}' END)").format(d=doc), [path, path])
    number = (sql.SQL("(CASE jsonb_typeof({d}) WHEN 'number' THEN ({d} #>> '{{}}')::numeric "
                      "WHEN 'boolean' THEN ({d} = 'true'::jsonb)::int END)").format(d=doc),
              [path, path, path])
    missing = (sql.SQL("({} #>> '{{}}' IS NULL)").format(doc), [path])
    if flt.op == "isnull":
        return (missing[0] if flt.value else sql.SQL("NOT {}").format(missing[0])), missing[1]
    if flt.op == "like":
        clause, pattern = _like(sql.SQL("({} #>> '{{}}')").format(doc), flt.value)
        return clause, [path, *pattern]

    def compare(value: Any, op: str = "=") -> Clause:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        operand, params = number if is_number else text
        return (sql.SQL("COALESCE({} {} %s, FALSE)").format(operand, sql.SQL(op)),
                [*params, value if is_number else str(value)])

    if flt.op in ("in", "nin", "ne"):
        parts = [compare(v) for v in (flt.value if flt.op != "ne" else [flt.value])]
        found = sql.SQL("({})").format(sql.SQL(" OR ").join(p for p, _ in parts))
        params = [p for _, values in parts for p in values]
        if flt.op == "in":
            return found, params
        return sql.SQL("{} OR NOT {}").format(missing[0], found), [*missing[1], *params]
    return compare(flt.value, _COMPARE[flt.op])
