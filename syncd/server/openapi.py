"""The OpenAPI 3.1 document, generated from `wire.ENDPOINTS` and the msgspec structs.

Generated, never written by hand, so it stays true to the endpoints: the same table makes the
routes (`app.py`) and this document, and msgspec turns the very structs the server decodes
into the JSON Schemas here. The document anyone may read names no entity (the tables of a
database are not public); the one for token holders lists the served entities in the `entity`
parameter. Both are built once, at start-up.
"""
from __future__ import annotations

from typing import Any, Sequence

import msgspec

from .. import wire

_REF = "#/components/schemas/{name}"
_ERRORS = {
    400: "Malformed JSON", 401: "No token, or an invalid one", 403: "A read-only token wrote",
    404: "Unknown entity", 408: "The body did not arrive in time",
    409: "The write would break a constraint", 413: "Body over the server's limit",
    422: "A field or value that does not fit",
    429: "Too many idempotent writes within the replay window; retry after Retry-After seconds",
    503: "The database is busy; retry after Retry-After seconds",
}


def document(entities: Sequence[str], limits: wire.Limits) -> dict[str, Any]:
    """The document; `entities` empty: one that names no entity."""
    types = sorted({t for e in wire.ENDPOINTS for t in (e.request, e.response)
                    if isinstance(t, type) and issubclass(t, msgspec.Struct)} | {wire.ErrorBody},
                   key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    by_type = dict(zip(types, refs))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in wire.ENDPOINTS:
        paths.setdefault(wire.PREFIX + endpoint.path, {})[endpoint.method.lower()] = \
            _operation(endpoint, by_type, entities)
    return {
        "openapi": "3.1.0",
        "info": {"title": "syncd record API", "version": "1",
                 "description": "Records of one syncd environment. Limits: request bodies up to "
                                f"{limits.max_body_bytes} bytes; up to {limits.max_page} rows, "
                                "keys or patches per request."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }


def _operation(endpoint: wire.Endpoint, by_type: dict[Any, Any],
               entities: Sequence[str]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": endpoint.name, "summary": endpoint.summary}
    body = by_type.get(endpoint.response, {"type": "object"})
    responses = {"200": _json("OK", body)}
    codes = _error_codes(endpoint)
    for code in codes:
        responses[str(code)] = _json(_ERRORS[code], by_type[wire.ErrorBody])
    op["responses"] = responses
    if endpoint in (wire.HEALTH, wire.OPENAPI):
        op["security"] = []
    if "{entity}" in endpoint.path:
        schema: dict[str, Any] = {"type": "string"}
        if entities:
            schema["enum"] = list(entities)
        op["parameters"] = [{"name": "entity", "in": "path", "required": True,
                             "description": "An entity (table) of the served environment",
                             "schema": schema}]
    if endpoint.request is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": by_type[endpoint.request]}}}
    return op


def _error_codes(endpoint: wire.Endpoint) -> list[int]:
    if endpoint in (wire.HEALTH, wire.OPENAPI):
        return []
    codes = [401, 503]
    if endpoint.request is not None:
        codes += [400, 408, 413, 422]
    if "{entity}" in endpoint.path:
        codes += [404, 409]  # 409: a constraint a write breaks
    if endpoint.writes:
        codes += [403, 429]
    return sorted(codes)


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
