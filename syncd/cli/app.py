"""The click application: the command group, error mapping and signal handling.

Exit codes: 0 done; 1 finished with failed entries or declined at the prompt; 2 bad input or
config (nothing written); 130/143 interrupted by SIGINT/SIGTERM.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from journal import JournalError, Journal

from .. import adapters
from .. import operations as ops
from ..config import Config, load_config
from ..errors import InputError, Interrupted, RunStateError, SyncdError
from ..render import err

EXIT_FAILED, EXIT_INPUT = 1, 2


class Stop:
    """Set by SIGINT/SIGTERM; checked between groups and between entries."""

    signum = 0

    def __call__(self) -> bool:
        return self.signum != 0

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signum = signum
        err.print("[yellow]stopping after the entry in flight (again to force)…[/]")
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


STOP = Stop()


class SyncdGroup(click.Group):
    """Maps every expected error to one line on stderr and an exit code (no tracebacks)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Abort:
            sys.exit(EXIT_FAILED)
        except click.ClickException as exc:
            fail(f"syncd: error: {exc.format_message()}", EXIT_INPUT)
        except (InputError, RunStateError, JournalError) as exc:
            fail(f"syncd: error: {exc}", EXIT_INPUT)
        except Interrupted:
            fail("Interrupted while planning; nothing was applied. `syncd resume RUN` plans again.",
                 STOP.exit_code())
        except SyncdError as exc:
            fail(f"syncd: failed: {exc}", EXIT_FAILED)
        except Exception as exc:  # a bug: one line, the traceback only on request
            if os.environ.get("SYNCD_DEBUG"):
                raise
            fail(f"syncd: internal error: {type(exc).__name__}: {exc} (SYNCD_DEBUG=1 shows more)", 70)


def fail(message: str, code: int) -> None:
    click.echo(message, err=True)  # plain: one line, never wrapped or styled
    sys.exit(code)


@click.group(cls=SyncdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", help="syncd.toml (default: $SYNCD_CONFIG, ./syncd.toml)")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Journaled, resumable, auditable sync of records and files between environments."""
    ctx.obj = config_path


def config_of(ctx: click.Context, *, required: bool = True) -> Config:
    return load_config(ctx.find_root().obj, required=required)


def existing_journal(ctx: click.Context) -> Journal:
    """The journal for commands that only read it: never creates an empty one."""
    return adapters.journal_for(config_of(ctx, required=False), create=False)
