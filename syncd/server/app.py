"""The ASGI application: routes from `wire.ENDPOINTS`, error handlers, body limit, lifespan."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Sequence

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from .. import wire
from .auth import Tokens
from .errors import ApiError, on_api_error, on_disconnect, on_http_exception, on_unexpected
from .openapi import document
from .replay import Replays
from .routes import HANDLERS, Api, route
from .served import Catalog, ServedStore

DEFAULT_LIMITS = wire.Limits(max_body_bytes=32 * 1024 * 1024, max_page=20_000)
BODY_TIMEOUT = 60.0  # seconds for a whole body: twice what the client waits for an answer
_JSON = "application/json"


def create_app(store: ServedStore, tokens: Tokens, limits: wire.Limits = DEFAULT_LIMITS, *,
               served: Sequence[str] = (), body_timeout: float = BODY_TIMEOUT) -> Starlette:
    """The record API over `store` (only the entities `served` names, when it names any);
    the store is described at startup and closed at shutdown."""
    api = Api(store, Catalog([]), tokens, limits, Replays(), body_timeout, tuple(served))
    # Built once: generating the document per request would let anyone make the server work.
    public = msgspec.json.encode(document([], limits))
    listed = public

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nonlocal listed
        api.catalog = Catalog(await store.describe(), api.served)
        listed = msgspec.json.encode(document(api.catalog.names, limits))
        try:
            yield
        finally:
            await store.close()

    async def health(_request: Request) -> Response:
        return Response(msgspec.json.encode(wire.Health()), media_type=_JSON)

    async def openapi(request: Request) -> Response:
        """Entity names only for a token holder: they are the database's table names."""
        try:
            api.tokens.caller(request.headers.get("authorization"))
        except ApiError:
            return Response(public, media_type=_JSON)
        return Response(listed, media_type=_JSON)

    routes = [Route(wire.HEALTH.url(), health, methods=["GET"], name="health"),
              Route(wire.OPENAPI.url(), openapi, methods=["GET"], name="openapi")]
    routes += [route(api, endpoint, handler) for endpoint, handler in HANDLERS.items()]
    return Starlette(
        routes=routes, lifespan=lifespan,
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_exception,
                            ClientDisconnect: on_disconnect, Exception: on_unexpected})
