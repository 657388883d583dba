"""`syncd serve ENV`: the HTTP record API over a SQLite environment (issue 3).

A thin edge like every command: it validates everything (environment, tokens, limits, the
entities to serve, the address) before it listens, prints one line saying where it listens,
then hands the app to uvicorn. `--port 0` picks a free port; the line printed names the real
one. Deadlines and a connection limit keep slow or silent clients from holding the server
(`syncd/server/connections.py`).
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import anyio
import click

from ..config import EnvironmentConfig
from ..stores import RECORD_STORES, StoreAdapter
from ..errors import InputError
from .app import cli, config_of

DEFAULT_PORT = 8787
_SECONDS = click.FloatRange(min=0, min_open=True)


@cli.command()
@click.argument("env")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int,
              help="Port to listen on (0: any free port)")
@click.option("--tokens-file", type=click.Path(path_type=Path), metavar="PATH",
              help="Tokens, one a line: TOKEN [read-write|read-only]; mode 600")
@click.option("--read-only", is_flag=True, help="Open the database read-only; refuse every write")
@click.option("--max-body", type=click.IntRange(min=1024), metavar="BYTES",
              help="Largest request body [default: 32 MiB]")
@click.option("--max-page", type=click.IntRange(min=1), metavar="N",
              help="Most rows, keys or patches per request [default: 20000]")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One line per request on stdout (never a token, nor a query string)")
@click.option("--header-timeout", type=_SECONDS, default=10.0, show_default=True,
              metavar="SECONDS", help="Time for a request's headers to arrive; then the "
                                      "connection is closed")
@click.option("--body-timeout", type=_SECONDS, default=60.0, show_default=True, metavar="SECONDS",
              help="Time for a request's whole body to arrive; then 408")
@click.option("--keep-alive", type=click.IntRange(min=1), default=5, show_default=True,
              metavar="SECONDS", help="How long an idle connection is kept between requests")
@click.option("--max-connections", type=click.IntRange(min=1), default=100, show_default=True,
              metavar="N", help="Connections at once; a request beyond them gets 503")
@click.pass_context
def serve(ctx: click.Context, env: str, host: str, port: int, tokens_file: Path | None,
          read_only: bool, max_body: int | None, max_page: int | None, access_log: bool,
          header_timeout: float, body_timeout: float, keep_alive: int,
          max_connections: int) -> None:
    """Serve ENV's records over HTTP (a SQLite or Postgres environment: any store the registry marks servable).

    Tokens: $SYNCD_SERVE_TOKENS (read-write) and $SYNCD_SERVE_READ_TOKENS (read-only),
    comma-separated, and/or --tokens-file. The environment's `serve_entities`, when set,
    names the only entities served.
    """
    try:
        import uvicorn

        from .. import server
        from ..server.auth import load_tokens
        from ..server.connections import Connections, uvicorn_config
        from ..wire import Limits
    except ImportError as exc:
        raise InputError(f"syncd serve needs the http extra (pip install 'syncd[http]'): {exc}") from None
    config = config_of(ctx)
    environment = config.environment(env)
    adapter = RECORD_STORES.for_url(environment.records)
    if not adapter.servable:
        servable = " or ".join(a.label for a in RECORD_STORES.adapters() if a.servable)
        raise InputError(f"environment '{env}' is an {adapter.label} environment; "
                         f"syncd serve serves {servable} environments")
    tokens = load_tokens(os.environ, tokens_file, read_only=read_only)
    limits = Limits(max_body_bytes=max_body or server.DEFAULT_LIMITS.max_body_bytes,
                    max_page=max_page or server.DEFAULT_LIMITS.max_page)
    if environment.serve_entities:
        anyio.run(_check_served, adapter, env, environment, config.base_dir)
    store = adapter.open(env, environment, config.base_dir, read_only)
    sock = _listen(host, port)
    app = server.create_app(store, tokens, limits, served=environment.serve_entities,
                            body_timeout=body_timeout)
    where = getattr(store, "path", environment.records)
    click.echo(f"syncd serve: {env} ({where}{', read-only' if read_only else ''}) on "
               f"{_url(sock)} with {len(tokens)} token(s), {tokens.read_only} read-only",
               err=True)
    uv_config = uvicorn_config(app, Connections(header_timeout, keep_alive, max_connections),
                               access_log=access_log)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal: let it
    # end the process as usual, not reach the CLI's "stop after the entry in flight" handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        uvicorn.Server(uv_config).run(sockets=[sock])
    except KeyboardInterrupt:
        sys.exit(130)


async def _check_served(adapter: StoreAdapter, env: str, environment: EnvironmentConfig,
                        base_dir: str) -> None:
    """`serve_entities` names entities of the database, before anything listens. A store of
    its own, read-only: the served one is opened later, in uvicorn's event loop."""
    from ..server.served import check_served

    store = adapter.open(env, environment, base_dir, True)
    try:
        check_served(await store.describe(), environment.serve_entities,
                     f"environments.{env}.serve_entities")
    finally:
        await store.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound before uvicorn starts so the printed port is the real one."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        raise InputError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
