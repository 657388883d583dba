"""Values between Postgres types and syncd's canonical form.

The canonical form is what the SQLite store would hold for the same logical record, so a row
hashes the same (payload.row_hash) whichever store it was read from, and resume recognises a
row an earlier attempt wrote:

    uuid → lower-case hyphenated text       timestamptz → ISO-8601 in UTC, "…T10:00:00Z"
    timestamp → "YYYY-MM-DDTHH:MM:SS[.ffffff]"   date → "YYYY-MM-DD"
    numeric → its exact text ("1.50")       boolean → 1 / 0
    json, jsonb → JSON text (jsonb's own normalised text)   enum and others → their text
    bytea → bytes    integers, floats, text → as they are    arrays → lists of the above

Reads convert in SQL (`select_expr`), so rows arrive as plain text and numbers; only arrays
need Python (`canonical`). Writes send canonical values and let Postgres parse them by the
target column's type; `param` converts what Postgres would refuse or silently change.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import msgspec
from psycopg import sql

from .catalog import PgColumn

_json = msgspec.json.Encoder()
_ISO = "YYYY-MM-DD\"T\"HH24:MI:SS.US"
# a time of day followed by a UTC offset: text a `timestamp` column would silently cut
_OFFSET = re.compile(r"\d\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?)$")
_INT = re.compile(r"[+-]?\d+")
_UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CANONICAL_UUID = re.compile(_UUID_TEXT)
_UUID_LIST = re.compile(rf"{_UUID_TEXT}(?:,{_UUID_TEXT})*")


class Unconvertible(ValueError):
    """A value the column's type cannot hold as it is; the message says why."""


def select_expr(column: PgColumn) -> sql.Composable:
    """The column in canonical form, as a SELECT expression."""
    col = sql.Identifier(column.name)
    if column.kind == "timestamptz":
        return sql.SQL("replace(to_char({} AT TIME ZONE 'UTC', {}), '.000000', '') || 'Z'"
                       ).format(col, sql.Literal(_ISO))
    if column.kind == "timestamp":
        return sql.SQL("replace(to_char({}, {}), '.000000', '')").format(col, sql.Literal(_ISO))
    if column.kind == "date":
        return sql.SQL("to_char({}, 'YYYY-MM-DD')").format(col)
    if column.kind == "bool":
        return sql.SQL("{}::int").format(col)
    if column.kind in ("int", "float", "text", "bytea", "array"):
        return col
    return sql.SQL("{}::text").format(col)  # uuid, numeric, json, enum, other


# Key lists of these kinds travel as one comma-separated text that the server splits: no
# per-value quoting work in Python (their canonical text never holds a comma).
_SPLIT_ARRAYS = {"uuid": sql.SQL("uuid[]"), "int": sql.SQL("bigint[]")}


def any_of(column: PgColumn, values: list[Any]) -> tuple[sql.Composable, Any]:
    """`ANY(…)` over values already converted by `param`, and its one parameter."""
    cast = _SPLIT_ARRAYS.get(column.kind)
    if cast is None:
        return sql.SQL("ANY(%s)"), values
    return (sql.SQL("ANY(string_to_array(%s, ',')::{})").format(cast),
            ",".join(map(str, values)))


def fast_params(column: PgColumn, values: list[Any]) -> list[Any] | None:
    """`param` of every value, checked in one C call where the planner's usual key lists
    allow it (canonical UUID text, integers); None when the values need `param` one by one."""
    if column.kind == "uuid" and all(type(v) is str for v in values):
        if not values or _UUID_LIST.fullmatch(",".join(values)):
            return values
    elif column.kind == "int" and all(type(v) is int for v in values):
        return values
    return None


def canonical(value: Any) -> Any:
    """An array element (or any value psycopg loaded) in canonical form."""
    if value is None or isinstance(value, (str, int, float, bytes)):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dict, msgspec.Raw)):
        return _json.encode(value).decode()
    if isinstance(value, memoryview):
        return bytes(value)
    return str(value)


def param(column: PgColumn, value: Any) -> Any:
    """A canonical value as a query parameter for this column (Python str travels untyped,
    so Postgres parses it by the column's type); Unconvertible when it cannot be held."""
    if value is None:
        return None
    convert = _PARAMS.get(column.kind)
    return convert(column, value) if convert else value


def _bool(column: PgColumn, value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "t", "f", "true", "false"):
        return value
    raise Unconvertible(f"{value!r} is not a boolean (0/1, true/false)")


def _int(column: PgColumn, value: Any) -> Any:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    raise Unconvertible(f"{value!r} is not an integer")


def _number(column: PgColumn, value: Any) -> Any:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            raise Unconvertible(f"{value!r} is not a number") from None
        return value
    raise Unconvertible(f"{value!r} is not a number")


def _uuid(column: PgColumn, value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        if _CANONICAL_UUID.fullmatch(value):  # the usual case, ten times cheaper than UUID()
            return value
        try:
            uuid.UUID(value)
        except ValueError:
            raise Unconvertible(f"{value!r} is not a UUID") from None
        return value
    raise Unconvertible(f"{value!r} is not a UUID")


def _json_text(column: PgColumn, value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise Unconvertible(f"{bytes(value)[:20]!r}… is bytes, not JSON")
    return _json.encode(value).decode()  # a number, a dict or a list: its JSON text


def _timestamp(column: PgColumn, value: Any) -> Any:
    if isinstance(value, str):
        if _OFFSET.search(value.strip()):
            raise Unconvertible(f"{value!r} has a UTC offset that {column.type} would drop")
        return value
    return _text(column, value)


def _text(column: PgColumn, value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise Unconvertible(f"{bytes(value)[:20]!r} is bytes, not {column.type}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # what SQLite does with a number in a TEXT column
    raise Unconvertible(f"{value!r} is not text")


def _bytea(column: PgColumn, value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise Unconvertible(f"{value!r} is not bytes")


def _array(column: PgColumn, value: Any) -> Any:
    if isinstance(value, str):  # an array kept as JSON text in SQLite
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError:
            raise Unconvertible(f"{value!r} is not a JSON array") from None
    if not isinstance(value, list):
        raise Unconvertible(f"{value!r} is not an array")
    element = PgColumn(column.name, column.type.removesuffix("[]"), column.element)
    return [param(element, v) for v in value]


_PARAMS = {
    "bool": _bool, "int": _int, "float": _number, "numeric": _number, "uuid": _uuid,
    "json": _json_text, "timestamp": _timestamp, "text": _text, "enum": _text,
    "timestamptz": _text, "date": _text, "bytea": _bytea, "array": _array,
}
# Kinds a COPY row is checked for in Python: the others Postgres parses, or refuses with a
# line number the store turns into a message naming the record. Text passes unchecked where
# Postgres parses it by the column's type, as it would parse a COPY from a file.
COPY_CHECKED = frozenset({"bool", "json", "timestamp", "text", "enum", "bytea", "array"})
TEXT_CHECKED = frozenset({"timestamp", "bytea", "array"})
