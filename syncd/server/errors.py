"""Every error the API answers with: a status code and a JSON `ErrorBody` naming the problem.

Bad input is a 4xx, never a 500: malformed JSON 400, no or a wrong token 401, a read-only
token writing 403, an unknown entity 404, a constraint the write would break 409, a body over
the limit 413, a field or value that does not fit 422. A busy database is 503 with Retry-After,
which the client retries. Only a bug is a 500, and its body says no more than "internal error".
"""
from __future__ import annotations

import logging
import sqlite3

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import FilterError, PermanentError, SchemaError, TransientError
from ..wire import ErrorBody

log = logging.getLogger("syncd.server")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid",
          500: "internal", 503: "unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = msgspec.json.encode(ErrorBody(error=_CODES.get(status, "error"), message=message))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def on_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def on_http_exception(_request: Request, exc: Exception) -> Response:
    """Starlette's own: no route (404), wrong method (405), body over the limit (413)."""
    assert isinstance(exc, HTTPException)
    message = {404: "no such endpoint", 413: "request body over the server's limit"}.get(
        exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def on_unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("internal error")  # the traceback stays in the server's log
    return error_response(500, "internal error")


def mapped(exc: Exception) -> ApiError | None:
    """syncd's and sqlite3's errors from the store, as the API reports them (None: a bug)."""
    if isinstance(exc, (SchemaError, FilterError)):
        return ApiError(422, str(exc))
    if isinstance(exc, TransientError):
        return ApiError(503, str(exc), {"Retry-After": "1"})
    if isinstance(exc, PermanentError):
        return ApiError(409, str(exc))
    if isinstance(exc, (OverflowError, UnicodeError, sqlite3.InterfaceError,
                        sqlite3.ProgrammingError)):
        # values JSON can carry but SQLite cannot bind: ints past 64 bits, lone surrogates
        return ApiError(422, f"value cannot be stored: {exc}")
    return None
