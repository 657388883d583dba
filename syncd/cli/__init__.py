"""`syncd` command line: a thin edge that parses input, calls one operation, renders output.

Commands live by concept: sync (copy, transfer, resume), history (runs, show, audit, log,
journal), schema, serve (the HTTP record API), daemon (daemon, jobs). `app` holds the group,
the error mapping and signal handling.
"""
from __future__ import annotations

# importing a module registers its commands
from . import daemon, history, schema, serve, sync  # noqa: F401
from .app import STOP, cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point."""
    STOP.install()
    cli.main(prog_name="syncd")
