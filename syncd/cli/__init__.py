"""`syncd` command line: a thin edge that parses input, calls one operation, renders output.

Commands live by concept: sync (copy, transfer, resume), history (runs, show, audit, log,
journal), schema. `app` holds the group, the error mapping and signal handling.
"""
from __future__ import annotations

from . import history, schema, sync  # noqa: F401  (registers the commands)
from .app import STOP, cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point."""
    STOP.install()
    cli.main(prog_name="syncd")
