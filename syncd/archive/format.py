"""The archive format (docs/archive-format.md): the manifest's structure and how values are
written so they come back exactly.

Values are JSON, except what JSON cannot hold exactly: bytes are `{"$bytes": BASE64}` and
non-finite floats `{"$float": "nan"|"inf"|"-inf"}`. Records never hold JSON objects (a JSON
column is stored as its JSON text), so any other object in a record is refused.
"""
from __future__ import annotations

import base64
import math
from typing import Any, Literal, Sequence

import msgspec

from ..errors import ArchiveError

FORMAT = "syncd-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ColumnSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    type: str = ""  # the declared type, as the source described it
    notnull: bool = False
    is_json: bool = False


class EntitySpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    key: str
    columns: list[ColumnSpec]
    foreign_keys: list[tuple[str, str, str]] = []  # (column, other table, other column)
    natural_key: list[str] = []
    references: list[tuple[str, str]] = []  # (field, target entity), JSON paths included
    count: int = 0


class MemberSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    size: int
    sha256: str


class Manifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: str
    format_version: int
    created_at: str
    source: str
    kind: Literal["export", "backup"]
    run: str | None = None
    selection: dict[str, Any] = {}
    entities: list[EntitySpec] = []  # dependency order: parents first
    labels: list[str] = []
    members: dict[str, MemberSpec] = {}  # every member but the manifest
    files: dict[str, str] = {}  # file URI → sha256 of its content (member files/<sha256>)
    new_ids: dict[str, str] = {}  # entity → member of its [old, new] key pairs

    def entity(self, name: str) -> EntitySpec:
        for e in self.entities:
            if e.name == name:
                return e
        raise ArchiveError(f"the archive has no entity '{name}'")


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_encoder = msgspec.json.Encoder()


def encode_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    return str(value)  # Decimal, UUID, dates from other stores: their exact text


def decode_value(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            if "$bytes" in value and isinstance(value["$bytes"], str):
                try:
                    return base64.b64decode(value["$bytes"], validate=True)
                except ValueError:
                    raise ArchiveError(f"{where}: $bytes is not base64") from None
            if value.get("$float") in _FLOATS:
                return _FLOATS[value["$float"]]
        raise ArchiveError(f"{where}: a value is an object that is not $bytes or $float")
    if isinstance(value, list):
        return [decode_value(v, where) for v in value]
    return value


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int)) or (
        isinstance(value, float) and math.isfinite(value))


def encode_record(columns: Sequence[str], row: Sequence[Any]) -> bytes:
    """One NDJSON line (with its newline): `{column: value}`."""
    values = row if all(_plain(v) for v in row) else [encode_value(v) for v in row]
    return _encoder.encode(dict(zip(columns, values))) + b"\n"


def decode_record(line: bytes, columns: Sequence[str], where: str) -> tuple[Any, ...]:
    """The row in `columns` order; a field the entity does not have is refused."""
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        raise ArchiveError(f"{where}: malformed JSON") from None
    if not isinstance(obj, dict):
        raise ArchiveError(f"{where}: a record is not a JSON object")
    if len(obj) > len(columns) or any(k not in columns for k in obj):
        unknown = next((k for k in obj if k not in columns), "?")
        raise ArchiveError(f"{where}: the record has field '{unknown}' that the entity does not have")
    values = [obj.get(c) for c in columns]
    if any(isinstance(v, (dict, list)) for v in values):
        values = [decode_value(v, where) for v in values]
    return tuple(values)
