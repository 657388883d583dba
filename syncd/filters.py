"""`key:op:value` record filters (architecture §6), validated against the schema.

Filters become SQL only through `to_sql`, which quotes identifiers that the entity declares
and passes every value (and every JSON path) as a bound parameter.

Value typing follows SQLite, because a comparison between an integer and a text never matches:
- INTEGER/REAL affinity columns take numbers only;
- NUMERIC affinity columns (NUMERIC, DECIMAL, BOOLEAN, DATETIME...) take a number when the text
  is one (BOOLEAN-like also true/false → 1/0), else the text itself (dates stay text);
- text, BLOB, untyped and JSON columns take the text unchanged ("0042" stays "0042");
- JSON dot paths take a JSON number, true/false as 1/0 (what json_extract returns), else text.
A value in matching quotes ("42" or '42') is always text, except on INTEGER/REAL columns.
`ne` and `nin` also match NULL/missing values, as ORM excludes do: "not archived" includes
records with no status.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import FilterError, SchemaError
from .schema import Column, Entity, FieldPath

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "like", "isnull")

_COMPARE = {"eq": "=", "ne": "IS NOT", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE"}
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_JSON_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Filter:
    field: FieldPath
    op: str
    value: Any  # list for in/nin, bool for isnull


def parse_filters(texts: Iterable[str], entity: Entity) -> tuple[Filter, ...]:
    return tuple(parse_filter(text, entity) for text in texts)


def parse_filter(text: str, entity: Entity) -> Filter:
    parts = text.split(":", 2)  # the value keeps its own ':' (timestamps)
    if len(parts) < 3 or not parts[0] or not parts[1]:
        raise FilterError(f"malformed filter {text!r}: expected key:op:value")
    key, op, raw = parts[0].strip(), parts[1].strip().lower(), parts[2]
    if op not in OPS:
        raise FilterError(f"unknown filter op {parts[1]!r} in {text!r} (ops: {', '.join(OPS)})")
    try:
        field = entity.field(key)
    except SchemaError as exc:
        raise FilterError(f"{exc} in filter {text!r}") from None
    kind = _kind(field, entity)
    return Filter(field, op, _value(op, raw, kind, text))


def _kind(field: FieldPath, entity: Entity) -> str:
    """How values for this field are typed: integer, real, numeric, bool, text or json."""
    if field.nested:
        return "json"
    column: Column = entity.types[field.column]
    return "text" if column.is_json else _affinity(column.type)


def _affinity(declared: str) -> str:
    # SQLite's affinity rules (https://sqlite.org/datatype3.html §3.1), in their order
    if "INT" in declared:
        return "integer"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")) or "BLOB" in declared or not declared:
        return "text"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "bool" if "BOOL" in declared else "numeric"


def _value(op: str, raw: str, kind: str, text: str) -> Any:
    if op == "isnull":
        flag = raw.strip().lower()
        if flag not in ("true", "false"):
            raise FilterError(f"isnull takes true or false, not {raw!r}, in {text!r}")
        return flag == "true"
    if op in ("in", "nin"):
        return [_scalar(item, kind, text) for item in _list_items(raw, text)]
    if op == "like":
        return _unquoted(raw.strip())[0]  # a pattern is text whatever the column holds
    return _scalar(raw, kind, text)


def _list_items(raw: str, text: str) -> list[str]:
    """`[a, "b,c", 'd']` → ['a', '"b,c"', "'d'"]; quotes are kept so items can be forced to text."""
    inner = raw.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise FilterError(f"in/nin take a list in brackets, e.g. [a,b,c], in {text!r}")
    items: list[str] = []
    current, quote = "", ""
    for char in inner[1:-1]:
        if char == "," and not quote:
            items.append(current.strip())
            current = ""
            continue
        if char in "\"'" and (not quote or char == quote) and (quote or not current.strip()):
            quote = "" if quote else char
        current += char
    items.append(current.strip())
    if items == [""] or "" in items:
        raise FilterError(f"empty list or list item in {text!r}")
    return items


def _unquoted(value: str) -> tuple[str, bool]:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1], True
    return value, False


def _scalar(raw: str, kind: str, text: str) -> Any:
    value, quoted = _unquoted(raw.strip())  # quote a value to keep its outer spaces
    if kind in ("integer", "real"):
        number = _number(value.strip())
        if number is None:
            raise FilterError(f"{kind} value expected, got {value!r}, in {text!r}")
        return number
    if quoted or kind == "text":
        return value
    if kind == "json":
        return _json_scalar(value)
    if kind == "bool" and value.lower() in ("true", "false"):
        return int(value.lower() == "true")
    number = _number(value)
    return value if number is None else number


def _number(value: str) -> int | float | None:
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    return None


def _json_scalar(value: str) -> Any:
    if _JSON_NUMBER.fullmatch(value):
        return float(value) if any(c in value for c in ".eE") else int(value)
    if value in ("true", "false"):
        return int(value == "true")  # json_extract returns 1/0 for JSON booleans
    return value


# ---------------------------------------------------------------------------- SQL

def to_sql(filters: Sequence[Filter], entity: Entity) -> tuple[str, list[Any]]:
    """One WHERE expression (no 'WHERE'), AND-ed, and its parameters; ("", []) when none."""
    clauses: list[str] = []
    params: list[Any] = []
    for flt in filters:
        clause, values = _clause(flt, entity)
        clauses.append(clause)
        params.extend(values)
    return " AND ".join(clauses), params


def _clause(flt: Filter, entity: Entity) -> tuple[str, list[Any]]:
    target, params = _operand(flt.field, entity)
    if flt.op == "isnull":
        return f"{target} IS {'' if flt.value else 'NOT '}NULL", params
    if flt.op in ("in", "nin"):
        if not isinstance(flt.value, (list, tuple)) or not flt.value:
            raise FilterError(f"{flt.op} needs a non-empty list for {flt.field}")
        marks = ", ".join("?" * len(flt.value))
        if flt.op == "in":
            return f"{target} IN ({marks})", [*params, *flt.value]
        return f"({target} IS NULL OR {target} NOT IN ({marks}))", [*params, *params, *flt.value]
    if flt.op not in _COMPARE:
        raise FilterError(f"unknown filter op {flt.op!r} (ops: {', '.join(OPS)})")
    return f"{target} {_COMPARE[flt.op]} ?", [*params, flt.value]


def _operand(field: FieldPath, entity: Entity) -> tuple[str, list[Any]]:
    """The SQL for a field, validated against the entity before its name is quoted."""
    try:
        valid = entity.field(str(field)) == field  # a Filter may be built by hand
    except SchemaError as exc:
        raise FilterError(str(exc)) from None
    if not valid:
        raise FilterError(f"invalid field {str(field)!r} on entity {entity.name!r}")
    column = '"' + field.column.replace('"', '""') + '"'
    if not field.nested:
        return column, []
    return f"json_extract({column}, ?)", [field.json_path]
