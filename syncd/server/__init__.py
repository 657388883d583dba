"""`syncd serve`: one environment's record store as an HTTP API (architecture §8, issue 3).

    app          the ASGI application (starlette): routes, error handlers, lifespan
    routes       the endpoints; what every one shares (token, body and its deadline, entity,
                 error mapping)
    auth         bearer tokens from the environment or an owner-only file; read-only tokens
    served       the store it serves and the tables as the API sees them (`serve_entities`)
    replay       idempotency keys: a retried write gets its first attempt's answer, per token
                 within a window
    openapi      the OpenAPI document, generated from `syncd.wire`
    errors       status codes and JSON error bodies
    connections  uvicorn's settings: header deadline, keep-alive, connection limit, an access
                 log without query strings

The messages live in `syncd.wire`, shared with the client (`syncd.stores.http`).
"""
from __future__ import annotations

from .app import DEFAULT_LIMITS, create_app

__all__ = ["DEFAULT_LIMITS", "create_app"]
