"""`syncd serve`: one environment's record store as an HTTP API (architecture §8, issue 3).

    app       the ASGI application (starlette): routes, error handlers, body limit, lifespan
    routes    the endpoints; what every one shares (token, body, entity, error mapping)
    auth      bearer tokens from the environment or an owner-only file; read-only tokens
    served    the SQLite store it serves (plus delete) and the tables as the API sees them
    replay    idempotency keys: a retried write gets its first attempt's answer
    openapi   the OpenAPI document, generated from `syncd.wire`
    errors    status codes and JSON error bodies

The messages live in `syncd.wire`, shared with the client (`syncd.stores.http`).
"""
from __future__ import annotations

from .app import DEFAULT_LIMITS, create_app

__all__ = ["DEFAULT_LIMITS", "create_app"]
