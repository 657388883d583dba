"""`syncd` command line: a thin edge that parses input, calls one operation, renders output.

Commands live by concept: sync (copy, transfer, resume, cancel), history (runs, show, audit,
log, journal), schema, serve (the HTTP record API), daemon (daemon, jobs). `app` holds the
group, the error mapping and signal handling. A command's module is imported only when that
command runs (`app.COMMANDS`): importing them all here cost every invocation, `--help`
included, what planning, serving and the daemon need.
"""
from __future__ import annotations

from ..runtime import start_process
from .app import STOP, cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point."""
    start_process()
    STOP.install()
    cli.main(prog_name="syncd")
