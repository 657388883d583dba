"""The endpoints: check the caller, decode and check the request, call the store, answer.

One wrapper (`route`) does what every endpoint shares, in this order: token (401), write
access (403), body size and deadline (413, 408), entity (404), JSON body (400/422); then the
handler, whose store errors are mapped to API errors; writes go through the idempotency
replays. Handlers only check what is particular to them: limits, columns, value shapes, keys.
"""
from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Awaitable, Callable, Sequence, cast

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import FilterError, SchemaError
from ..filters import Filter
from ..schema import Entity, FieldPath, TableInfo
from .. import wire
from .auth import Caller, Tokens, require_write
from .errors import ApiError, mapped
from .replay import Replays
from .served import Catalog, ServedStore, check_columns

_encode = msgspec.json.Encoder().encode


@dataclass
class Api:
    store: ServedStore
    catalog: Catalog
    tokens: Tokens
    limits: wire.Limits
    replays: Replays
    body_timeout: float  # seconds to receive a whole request body
    served: tuple[str, ...] = ()  # the only entities served (empty: all)


def route(api: Api, endpoint: wire.Endpoint, handler: Callable[..., Awaitable[Any]]) -> Route:
    decoder: msgspec.json.Decoder[Any] | None = (
        msgspec.json.Decoder(endpoint.request) if endpoint.request else None)

    async def call(request: Request) -> Response:
        caller = api.tokens.caller(request.headers.get("authorization"))
        if endpoint.writes:
            require_write(caller)
        body = await _body(request, api.limits.max_body_bytes, api.body_timeout)
        args: list[Any] = [api, caller] if endpoint is wire.SCHEMA else [api]
        entity = None
        if "entity" in request.path_params:
            args.append(entity := api.catalog.entity(request.path_params["entity"]))
        if decoder is not None:
            args.append(_decode(decoder, body))
        if endpoint.writes:
            key = request.headers.get("idempotency-key")
            scoped = f"{request.url.path}:{key}" if key else None
            data = await api.replays.run(caller.id, scoped, body,
                                         lambda: _answer(handler, args, entity))
        else:
            data = await _answer(handler, args, entity)
        return Response(data, media_type="application/json")

    return Route(wire.PREFIX + endpoint.path, call, methods=[endpoint.method],
                 name=endpoint.name)


async def _answer(handler: Callable[..., Awaitable[Any]], args: list[Any],
                  entity: Entity | None) -> bytes:
    """The handler's answer as JSON; store errors become API errors (a bug stays a 500)."""
    try:
        return _encode(await handler(*args))
    except ApiError:
        raise
    except Exception as exc:
        error = mapped(exc, entity)
        if error is None:
            raise
        raise error from exc


async def _body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused (413, JSON) as soon as it is known to exceed `limit`, and
    (408) when it has not all arrived within `timeout` seconds: uvicorn sets no deadline on
    a body, so a client sending it a byte at a time would hold its connection for ever."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the limit of {limit}; "
                            "split the request")
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"request body over the limit of {limit} bytes; "
                                        "split the request")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout:g} s",
                       {"Connection": "close"}) from None
    return b"".join(chunks)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError(422, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None


# ---------------------------------------------------------------------------- handlers

async def schema(api: Api, caller: Caller) -> wire.SchemaResponse:
    # a migrated database shows at once
    api.catalog = Catalog(await api.store.describe(), api.served)
    return wire.SchemaResponse(tables=[_table(t) for t in api.catalog.tables],
                               access=cast(Any, caller.access), limits=api.limits)


async def select(api: Api, entity: Entity, msg: wire.SelectRequest) -> wire.RowsResponse:
    _at_most(api, msg.limit, "limit")
    view = api.catalog.view(entity.name, tuple(msg.columns))
    filters = [_filter(api, view, spec) for spec in msg.filters]
    _at_most(api, sum(len(f.value) for f in filters if f.op in ("in", "nin")), "in/nin values")
    # A NULL key sorts first and cannot be passed as a cursor: a page of them would be
    # answered again and again. Such rows cannot be addressed anyway; leave them out.
    filters.append(Filter(FieldPath(entity.key), "isnull", False))
    rows = await api.store.select_page(view, filters, _after(msg), msg.limit, msg.order_by)
    return _rows(view, rows)


async def fetch(api: Api, entity: Entity, msg: wire.FetchRequest) -> wire.RowsResponse:
    _at_most(api, len(msg.keys), "keys")
    view = api.catalog.view(entity.name, tuple(msg.columns))
    return _rows(view, await api.store.fetch(view, msg.keys))


async def existing(api: Api, entity: Entity, msg: wire.KeysRequest) -> wire.KeysResponse:
    _at_most(api, len(msg.keys), "keys")
    return wire.KeysResponse(keys=list(await api.store.existing_keys(entity, msg.keys)))


async def match(api: Api, entity: Entity, msg: wire.MatchRequest) -> wire.MatchResponse:
    _at_most(api, len(msg.values), "values")
    check_columns(entity, msg.columns)
    width = len(msg.columns)
    if any(len(v) != width for v in msg.values):
        raise SchemaError(f"each natural-key value needs {width} items, one per column")
    values = [tuple(wire.unwrap_value(x) for x in v) for v in msg.values]
    found = await api.store.match_natural(replace(entity, natural_key=tuple(msg.columns)), values)
    return wire.MatchResponse(matches=[
        wire.Match(values=list(wire.wrap_blobs([nk])[0]), key=key) for nk, key in found.items()])


async def create(api: Api, entity: Entity, msg: wire.CreateRequest) -> wire.CreateResponse:
    _at_most(api, len(msg.rows), "rows")
    check_columns(entity, msg.columns)
    if entity.key not in msg.columns:
        raise SchemaError(f"columns must include the key {entity.key!r}")
    width = len(msg.columns)
    if any(len(row) != width for row in msg.rows):
        raise SchemaError(f"each row needs {width} values, one per column")
    _check_keys(entity.key, [row[msg.columns.index(entity.key)] for row in msg.rows])
    rows = wire.unwrap_blobs(msg.rows)
    flags = await api.store.create(entity, msg.columns, rows)
    return wire.CreateResponse(outcomes=["created" if f else "skipped" for f in flags])


async def update(api: Api, entity: Entity, msg: wire.UpdateRequest) -> wire.UpdateResponse:
    _at_most(api, len(msg.patches), "patches")
    patches = []
    for patch in msg.patches:
        check_columns(entity, list(patch.fields))
        if entity.key in patch.fields:
            raise SchemaError(f"the key {entity.key!r} cannot be patched")
        patches.append((patch.key, {c: wire.unwrap_value(v) for c, v in patch.fields.items()}))
    flags = await api.store.update(entity, patches)
    return wire.UpdateResponse(outcomes=["updated" if f else "missing" for f in flags])


async def delete(api: Api, entity: Entity, msg: wire.KeysRequest) -> wire.DeleteResponse:
    _at_most(api, len(msg.keys), "keys")
    flags = await api.store.delete(entity, msg.keys)
    return wire.DeleteResponse(outcomes=["deleted" if f else "missing" for f in flags])


HANDLERS: dict[wire.Endpoint, Callable[..., Awaitable[Any]]] = {
    wire.SCHEMA: schema, wire.SELECT: select, wire.FETCH: fetch, wire.EXISTING: existing,
    wire.MATCH: match, wire.CREATE: create, wire.UPDATE: update, wire.DELETE: delete,
}


# ---------------------------------------------------------------------------- checks

def _at_most(api: Api, count: int, what: str) -> None:
    if count > api.limits.max_page:
        raise ApiError(422, f"{count} {what} exceed this server's page size "
                            f"({api.limits.max_page}); split the request")


def _check_keys(key: str, values: Sequence[Any]) -> None:
    """Keys are text or integers (`wire.Key`): a NULL, real or BLOB key could never be
    fetched, patched or deleted, and NULL keys would break keyset paging."""
    for number, value in enumerate(values, 1):
        if type(value) not in (str, int):
            kind = "null" if value is None else "a BLOB" if type(value) is wire.Blob else "a real"
            raise SchemaError(f"key {key!r} of row {number} is {kind}; keys are text or integers")


def _filter(api: Api, entity: Entity, spec: wire.FilterSpec) -> Filter:
    field = FieldPath(spec.column, tuple(spec.path))
    if entity.field(str(field)) != field:  # unknown fields raise SchemaError → 422
        raise FilterError(f"invalid field {str(field)!r} on entity {entity.name!r}")
    if field.nested and not _json_path_ok(field.json_path):
        raise FilterError(f"invalid field {str(field)!r}: a key of its path cannot be "
                          "written in a JSON path")
    value, op = spec.value, spec.op
    if op == "isnull":
        ok = isinstance(value, bool)
    elif op in ("in", "nin"):
        ok = isinstance(value, list) and bool(value)
    elif op == "like":
        ok = isinstance(value, str)
    else:
        ok = not isinstance(value, (bool, list))
    if not ok:
        raise FilterError(f"op {op!r} on {str(field)!r}: value of the wrong shape "
                          "(in/nin: a non-empty list; isnull: a boolean; like: a string; "
                          "other ops: one value)")
    return Filter(field, op, value)


@lru_cache(maxsize=1024)
def _json_path_ok(path: str) -> bool:
    """Whether SQLite accepts this JSON path; asked of SQLite itself, since its parser is the
    judge, so a refused path is the request's fault (422), not the database's (409)."""
    with closing(sqlite3.connect(":memory:")) as probe:
        try:
            probe.execute("SELECT json_extract('{}', ?)", [path])
        except sqlite3.Error:
            return False
    return True


def _after(msg: wire.SelectRequest) -> Any:
    after = msg.after
    if msg.order_by is None:
        if isinstance(after, list):
            raise FilterError("after: the last key seen, not a list (a pair needs order_by)")
        return wire.unwrap_value(after)
    if after is None:
        return None
    if not isinstance(after, list) or len(after) != 2:
        raise FilterError("after: with order_by, the last [value, key] pair seen")
    return tuple(wire.unwrap_value(v) for v in after)


def _rows(view: Entity, rows: Sequence[Sequence[Any]]) -> wire.RowsResponse:
    return wire.RowsResponse(columns=list(view.columns), rows=cast(Any, wire.wrap_blobs(rows)))


def _table(table: TableInfo) -> wire.Table:
    return wire.Table(
        name=table.name,
        columns=[wire.Column(name=c.name, type=c.type, notnull=c.notnull, is_json=c.is_json)
                 for c in table.columns],
        primary_key=list(table.primary_key),
        foreign_keys=[wire.ForeignKey(column=c, table=t, other_column=o)
                      for c, t, o in table.foreign_keys])
