"""How `syncd serve` holds connections: deadlines, a limit, and an access log without secrets.

Without deadlines a client that opens connections and sends nothing, or a header a byte at a
time, holds them for ever. uvicorn covers part of it: `timeout_keep_alive` closes a connection
idle between requests, `limit_concurrency` answers 503 past a number of connections, and h11
refuses headers over `h11_max_incomplete_event_size`. What it lacks is a deadline on a
request's headers (its keep-alive timer stops at the first byte received); `HeaderDeadline`
adds one. The body's deadline is the app's (`routes._body`), which can still answer 408.

uvicorn's access log prints the query string, where a misguided client may put its token
(`?access_token=`): the filter below cuts it off.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 16 * 1024  # h11's default, pinned: a request line and headers past it get 400


@dataclass(frozen=True)
class Connections:
    """The defaults are `syncd serve`'s options' (cli/serve.py)."""

    header_timeout: float  # seconds to receive a request's headers, from the connection
    #                        opening (or keep_alive + header_timeout from the last response)
    keep_alive: int  # seconds an idle connection is kept between requests
    max_connections: int  # at once; a request arriving beyond them gets 503


def uvicorn_config(app: Starlette, connections: Connections, *, access_log: bool) -> uvicorn.Config:
    config = uvicorn.Config(
        app, http=_protocol(connections.header_timeout), log_level="info",
        access_log=access_log, lifespan="on", timeout_graceful_shutdown=10,
        timeout_keep_alive=connections.keep_alive, limit_concurrency=connections.max_connections,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    # after uvicorn.Config, which configures uvicorn's loggers
    logging.getLogger("uvicorn.access").addFilter(_without_query)
    return config


def _without_query(record: logging.LogRecord) -> bool:
    """uvicorn logs (client, method, path?query, version, status): keep the path only."""
    if isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, version, status = record.args
        record.args = (client, method, str(path).partition("?")[0], version, status)
    return True


class HeaderDeadline(H11Protocol):
    """h11 with a deadline on each request's headers: armed when the connection opens and
    when a response ends, disarmed when a request's headers have arrived; at the deadline the
    connection is closed (there is no request to answer yet). After a response the deadline
    comes after the keep-alive wait, which it must not cut short; it also ends a body that
    is still dripping in after an early answer (401, 413), which uvicorn would keep reading."""

    header_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request-response cycle: its headers are in
            self._disarm()

    def on_response_complete(self) -> None:
        # armed before uvicorn handles a pipelined request, which disarms it again
        self._arm(self.timeout_keep_alive + self.header_timeout)
        super().on_response_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def _protocol(header_timeout: float) -> type[HeaderDeadline]:
    class Protocol(HeaderDeadline):
        pass

    Protocol.header_timeout = header_timeout
    return Protocol
