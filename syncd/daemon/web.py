"""The status HTTP server: `/healthz`, `/status` (JSON) and `/metrics` (Prometheus text).

The standard library's threading HTTP server, in a background thread: three read-only
routes need no framework, and the daemon's event loop is never blocked by a scrape.
Handlers read the journal through the daemon's connection (it serialises access itself).
"""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import InputError


def parse_addr(text: str) -> tuple[str, int]:
    """HOST:PORT (`[::1]:9464` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InputError(f"--status-addr {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port)


class Routes:
    """What each path answers; filled in by the runner."""

    def __init__(self, healthy: Callable[[], bool], status: Callable[[], dict[str, Any]],
                 metrics: Callable[[], bytes]) -> None:
        self.healthy = healthy
        self.status = status
        self.metrics = metrics


def _handler(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            routes, path = server.routes, self.path.split("?", 1)[0]
            if path == "/healthz":
                healthy = routes.healthy()
                self._send(200 if healthy else 503, "text/plain; charset=utf-8",
                           b"ok\n" if healthy else b"stopping\n")
            elif path == "/status":
                self._send(200, "application/json", json.dumps(routes.status()).encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, routes.metrics())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz, /status, /metrics\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the daemon's own log

    return Handler


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class StatusServer:
    """Binds at once (so a bad address fails before the daemon starts); serves after start()."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.routes = Routes(lambda: False, dict, bytes)
        self._host = addr[0]
        server = _Server6 if ":" in addr[0] else ThreadingHTTPServer
        try:
            self._server = server(addr, _handler(self))
        except OSError as exc:
            raise InputError(f"--status-addr {addr[0]}:{addr[1]}: cannot listen: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="syncd-status",
                                        daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        shown = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{shown}:{port}"

    def start(self, routes: Routes) -> None:
        self.routes = routes
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
