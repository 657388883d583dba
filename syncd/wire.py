"""The messages of the HTTP record API, shared by `syncd serve` and the httpx record store.

Server and client decode and encode the same msgspec structs, and the OpenAPI document is
generated from them and from `ENDPOINTS`, so the three cannot drift apart.

Row values are SQLite values: text, integer, real, NULL, or a BLOB written `{"$bytes": BASE64}`.
JSON has no bytes, and a bare base64 string would come back as text, so the row would no longer
hash the same on both sides. JSON columns travel as their text, byte for byte. Keys are
integers or strings. Every message that returns rows names the columns it wants, in its order,
because a target may order or extend its columns differently from the source.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Sequence, cast

import msgspec

from .filters import OPS, Filter

PREFIX = "/v1"
READ_WRITE, READ_ONLY = "read-write", "read-only"

# SQLite integers are 64-bit: a larger JSON number is refused at decoding (422), not at binding
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Key = str | Int64


class Blob(msgspec.Struct, forbid_unknown_fields=True):
    """A BLOB value: its bytes, base64-encoded on the wire."""

    data: bytes = msgspec.field(name="$bytes")


Value = str | Int64 | float | None | Blob
WireRow = tuple[Value, ...]
Columns = Annotated[list[str], msgspec.Meta(min_length=1)]
FilterValue = str | Int64 | float | bool | list[str | Int64 | float]
Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "like", "isnull"]
assert set(Op.__args__) == set(OPS)  # type: ignore[attr-defined]


class _Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Requests refuse unknown fields: a misspelt field is an error, not a silent default."""


# ---------------------------------------------------------------------------- schema

class Column(msgspec.Struct, kw_only=True):
    name: str
    type: str  # declared type, upper-cased; "" when undeclared
    notnull: bool
    is_json: bool


class ForeignKey(msgspec.Struct, kw_only=True):
    column: str
    table: str
    other_column: str


class Table(msgspec.Struct, kw_only=True):
    name: str
    columns: list[Column]
    primary_key: list[str]
    foreign_keys: list[ForeignKey]


class Limits(msgspec.Struct, kw_only=True):
    max_body_bytes: int  # a larger request body is refused (413)
    max_page: int  # rows per page, and keys, rows or patches per request


class SchemaResponse(msgspec.Struct, kw_only=True):
    tables: list[Table]
    access: Literal["read-write", "read-only"]  # what the caller's token may do
    limits: Limits


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok"] = "ok"


# ---------------------------------------------------------------------------- reads

class FilterSpec(_Request, kw_only=True):
    """One `key:op:value` filter; `path` reaches into a JSON column."""

    column: str
    path: list[str] = []
    op: Op
    value: FilterValue  # a list for in/nin, a boolean for isnull, else one value


class SelectRequest(_Request, kw_only=True):
    """A page in keyset order: by key, or by (order_by, key) with NULLs left out.

    `after` is the last key seen, or with `order_by` the last [value, key] pair seen.
    """

    columns: Columns
    filters: list[FilterSpec] = []
    after: Value | list[Value] = None
    limit: Annotated[int, msgspec.Meta(ge=1)]
    order_by: str | None = None


class RowsResponse(msgspec.Struct, kw_only=True):
    columns: list[str]
    rows: list[WireRow]


class FetchRequest(_Request, kw_only=True):
    columns: Columns
    keys: list[Key]


class KeysRequest(_Request, kw_only=True):
    keys: list[Key]


class KeysResponse(msgspec.Struct, kw_only=True):
    keys: list[Key]


class MatchRequest(_Request, kw_only=True):
    """Natural-key lookups: `columns` are the natural key, `values` the tuples to find."""

    columns: Columns
    values: list[list[Value]]


class Match(msgspec.Struct, kw_only=True):
    values: list[Value]
    key: Key


class MatchResponse(msgspec.Struct, kw_only=True):
    matches: list[Match]


# ---------------------------------------------------------------------------- writes

class CreateRequest(_Request, kw_only=True):
    """Create-if-absent in one transaction; idempotent by key."""

    columns: Columns
    rows: list[WireRow]


class CreateResponse(msgspec.Struct, kw_only=True):
    outcomes: list[Literal["created", "skipped"]]


class Patch(_Request, kw_only=True):
    key: Key
    fields: Annotated[dict[str, Value], msgspec.Meta(min_length=1)]


class UpdateRequest(_Request, kw_only=True):
    patches: list[Patch]


class UpdateResponse(msgspec.Struct, kw_only=True):
    outcomes: list[Literal["updated", "missing"]]


class DeleteResponse(msgspec.Struct, kw_only=True):
    outcomes: list[Literal["deleted", "missing"]]


class ErrorBody(msgspec.Struct, kw_only=True):
    error: str  # a stable code: unauthorized, forbidden, not_found, invalid, conflict, ...
    message: str  # one line naming the problem


# ---------------------------------------------------------------------------- endpoints

@dataclass(frozen=True)
class Endpoint:
    name: str  # the OpenAPI operationId
    method: str
    path: str  # under PREFIX; {entity} is a table name
    request: type | None
    response: Any
    writes: bool
    summary: str

    def url(self, entity: str | None = None) -> str:
        from urllib.parse import quote

        path = self.path if entity is None else self.path.format(entity=quote(entity, safe=""))
        return PREFIX + path


HEALTH = Endpoint("health", "GET", "/health", None, Health, False, "Liveness; needs no token")
OPENAPI = Endpoint("openapi", "GET", "/openapi.json", None, dict, False,
                   "This document; needs no token")
SCHEMA = Endpoint("schema", "GET", "/schema", None, SchemaResponse, False,
                  "Tables, keys and foreign keys; the caller's access; the server's limits")
SELECT = Endpoint("select", "POST", "/entities/{entity}/select", SelectRequest, RowsResponse,
                  False, "A page of rows matching every filter, in keyset order")
FETCH = Endpoint("fetch", "POST", "/entities/{entity}/fetch", FetchRequest, RowsResponse, False,
                 "Rows with these keys, in key order; missing keys are absent")
EXISTING = Endpoint("existing", "POST", "/entities/{entity}/existing", KeysRequest, KeysResponse,
                    False, "Which of these keys exist")
MATCH = Endpoint("match", "POST", "/entities/{entity}/match", MatchRequest, MatchResponse, False,
                 "This store's keys for natural-key tuples")
CREATE = Endpoint("create", "POST", "/entities/{entity}/create", CreateRequest, CreateResponse,
                  True, "Create-if-absent in one transaction: created or skipped per row")
UPDATE = Endpoint("update", "POST", "/entities/{entity}/update", UpdateRequest, UpdateResponse,
                  True, "Patch fields in one transaction: updated or missing per key")
DELETE = Endpoint("delete", "POST", "/entities/{entity}/delete", KeysRequest, DeleteResponse,
                  True, "Delete-if-present in one transaction: deleted or missing per key")
ENDPOINTS = (HEALTH, OPENAPI, SCHEMA, SELECT, FETCH, EXISTING, MATCH, CREATE, UPDATE, DELETE)


# ---------------------------------------------------------------------------- values

def filter_spec(flt: Filter) -> FilterSpec:
    value = list(flt.value) if isinstance(flt.value, tuple) else flt.value
    return FilterSpec(column=flt.field.column, path=list(flt.field.path),
                      op=cast(Op, flt.op), value=value)


def wrap_blobs(rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    """Rows ready to encode: every bytes value becomes a Blob (rows without one are kept)."""
    if not any(type(v) is bytes for row in rows for v in row):
        return rows
    return [tuple(Blob(v) if type(v) is bytes else v for v in row) for row in rows]


def unwrap_blobs(rows: list[Any], raw: bytes | None = None) -> list[Any]:
    """Decoded rows with every Blob back to bytes. A `raw` body that never spells "$bytes"
    holds no Blob (inside a JSON string the quotes would be escaped), so it is not scanned."""
    if raw is not None and b'"$bytes"' not in raw:
        return rows
    return [tuple(v.data if type(v) is Blob else v for v in row) for row in rows]


def wrap_value(value: Any) -> Any:
    return Blob(value) if type(value) is bytes else value


def unwrap_value(value: Any) -> Any:
    return value.data if type(value) is Blob else value
