"""Every error the API answers with: a status code and a JSON `ErrorBody` naming the problem.

Bad input is a 4xx, never a 500: malformed JSON 400, no or a wrong token 401, a read-only
token writing 403, an unknown entity 404, a body that stops coming 408, a constraint the write
would break 409, a body over the limit 413, a field or value that does not fit 422 (naming
the field), too many idempotent writes in the replay window 429. A busy database is 503 with
Retry-After, which the client retries. Only a bug is a 500, and its body says no more than
"internal error". Messages never quote the database's DDL (a CHECK expression, a trigger's
text): they are for the caller, the schema is the server's.
"""
from __future__ import annotations

import logging
import re
import sqlite3

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import FilterError, PermanentError, SchemaError, TransientError
from ..schema import Entity
from ..wire import ErrorBody

log = logging.getLogger("syncd.server")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 408: "timeout", 409: "conflict", 413: "too_large",
          422: "invalid", 429: "too_many_requests", 500: "internal", 503: "unavailable"}
# constraint messages that name only tables and columns; any other would quote the DDL
_NAMED_CONSTRAINTS = ("UNIQUE constraint failed", "NOT NULL constraint failed",
                      "FOREIGN KEY constraint failed")
_STRICT = re.compile(r"cannot store (\w+) value in (\w+) column (.+)")


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


async def on_disconnect(request: Request, _exc: Exception) -> Response:
    """The client hung up before its request ended: one line, since nothing broke (no
    traceback), and no answer, since no one is left to read it."""
    log.warning("client disconnected before the end of its request: %s %s",
                request.method, request.url.path)  # the path only: a query may hold a secret
    return error_response(400, "client disconnected")


async def on_unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("internal error")  # the traceback stays in the server's log
    return error_response(500, "internal error")


def mapped(exc: Exception, entity: Entity | None = None) -> ApiError | None:
    """syncd's and sqlite3's errors from the store, as the API reports them (None: a bug).
    `entity`: the one the request addressed, to name the field a value did not fit."""
    if isinstance(exc, (SchemaError, FilterError)):
        return ApiError(422, str(exc))
    if isinstance(exc, TransientError):
        return ApiError(503, str(exc), {"Retry-After": "1"})
    if isinstance(exc, PermanentError):
        cause = exc.__cause__
        if isinstance(cause, sqlite3.Error):
            return _refused_by_sqlite(cause, entity)
        return ApiError(409, str(exc))
    if isinstance(exc, (OverflowError, UnicodeError, sqlite3.InterfaceError,
                        sqlite3.ProgrammingError)):
        # values JSON can carry but SQLite cannot bind: ints past 64 bits, lone surrogates
        return ApiError(422, f"value cannot be stored: {exc}")
    return None


def _refused_by_sqlite(exc: sqlite3.Error, entity: Entity | None) -> ApiError:
    """A value of the wrong type is the request's fault (422, naming the field); a broken
    constraint is a conflict with the data (409), named without the DDL's text."""
    text = str(exc)
    if text == "datatype mismatch":  # only a rowid key (INTEGER PRIMARY KEY) says this
        key = repr(entity.key) if entity else "the key"
        return ApiError(422, f"field {key}: a key of the wrong type (this key takes integers)")
    if strict := _STRICT.fullmatch(text):  # a STRICT table refused a value's type
        given, declared, where = strict.groups()
        return ApiError(422, f"field {_column(where, entity)}: a {given} value does not fit "
                             f"this {declared} column")
    if isinstance(exc, sqlite3.IntegrityError):
        if text.startswith(_NAMED_CONSTRAINTS):
            return ApiError(409, text)
        if text.startswith("CHECK constraint failed"):
            return ApiError(409, "CHECK constraint failed")
        return ApiError(409, "a constraint or trigger of the database refused the write")
    return ApiError(409, f"sqlite: {text}")


def _column(where: str, entity: Entity | None) -> str:
    """The column of SQLite's `table.column`, quoted (the table's name may hold dots)."""
    if entity is not None and where.startswith(f"{entity.name}."):
        return repr(where.removeprefix(f"{entity.name}."))
    return repr(where.rpartition(".")[2])
