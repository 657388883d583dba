"""Reading and changing fields of rows, including dot paths into JSON columns.

Rows are tuples in `entity.columns` order; a JSON column holds JSON text. A changed JSON
value is re-encoded compactly; an unchanged one keeps its original text byte for byte.
"""
from __future__ import annotations

from typing import Any, Mapping

import msgspec

from .schema import Entity, FieldPath, get_in, set_in
from .stores.base import Row

def decode_json(text: Any) -> Any:
    """A JSON column's value as data; None when it is NULL or not JSON."""
    if text is None:
        return None
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None


def field_value(entity: Entity, row: Row, field: FieldPath) -> Any:
    raw = row[entity.index(field.column)]
    if not field.path:
        return raw
    return get_in(decode_json(raw), field.path)


def with_fields(entity: Entity, row: Row, changes: Mapping[FieldPath, Any]) -> Row:
    """The row with each field set; JSON columns are decoded once per column."""
    out = list(row)
    by_column: dict[str, list[tuple[FieldPath, Any]]] = {}
    for field, value in changes.items():
        by_column.setdefault(field.column, []).append((field, value))
    for column, items in by_column.items():
        at = entity.index(column)
        out[at] = _apply_column(out[at], items)
    return tuple(out)


def _apply_column(raw: Any, items: list[tuple[FieldPath, Any]]) -> Any:
    if any(not f.path for f, _ in items):
        return items[-1][1]
    doc = decode_json(raw)
    for field, value in items:
        doc = set_in(doc, field.path, value)
    return msgspec.json.encode(doc).decode()
