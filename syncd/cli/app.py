"""The click application: the command group, error mapping and signal handling.

Exit codes (README.md's "Exit codes" says the same); every error is one line on stderr:
  0    done (`--help` too).
  1    finished with failed entries; declined at the prompt; a store failed ("syncd: failed:");
       `verify` found problems; `daemon --once` had a job fail.
  2    bad input or config, found before anything is written: an unknown option, environment,
       entity or field, a malformed filter, an unknown run, a run in the wrong state, and a
       journal path that cannot be a journal (a regular file on its way, a folder, a file that
       is not a journal).
  70   internal error (EX_SOFTWARE): a bug; SYNCD_DEBUG=1 shows the traceback.
  74   storage failure (EX_IOERR): the journal, or a file beside it, cannot be created or
       written: permission denied, read-only, no such folder, disk full, I/O error, locked by
       another process for longer than SYNCD_JOURNAL_BUSY_TIMEOUT (30 s). Before the plan is
       sealed nothing is written; later, what the journal holds stands and `resume` continues.
  130/143  interrupted by SIGINT/SIGTERM (the entries in flight finish; `resume` continues).
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from journal import JournalError, JournalStorageError, Journal

from .. import adapters
from .. import operations as ops
from ..config import Config, load_config
from ..errors import InputError, Interrupted, RunStateError, StoreUnavailable, SyncdError
from ..render import err

EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL, EXIT_STORAGE = 1, 2, 70, 74


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
        except (JournalStorageError, StoreUnavailable) as exc:  # the disk refused, not the input
            fail(f"syncd: error: {exc}", EXIT_STORAGE)
        except (InputError, RunStateError, JournalError) as exc:
            fail(f"syncd: error: {exc}", EXIT_INPUT)
        except Interrupted:
            fail("Interrupted while planning; nothing was applied. `syncd resume RUN` plans again.",
                 STOP.exit_code())
        except SyncdError as exc:
            fail(f"syncd: failed: {exc}", EXIT_FAILED)
        except Exception as exc:
            if file_error(exc) is None and os.environ.get("SYNCD_DEBUG"):
                raise
            fail(*unexpected(exc))


def file_error(exc: Exception) -> OSError | None:
    """A failed file operation outside the journal (a lock file beside it, say): storage too.
    OSErrors without a file (a reset connection) stay internal: a store should have mapped them."""
    return exc if isinstance(exc, OSError) and exc.filename is not None else None


def unexpected(exc: Exception) -> tuple[str, int]:
    """What an error syncd does not raise on purpose says, and its exit code."""
    failed = file_error(exc)
    if failed is not None:
        reason = failed.strerror.lower() if failed.strerror else str(failed)
        return f"syncd: error: {failed.filename}: {reason}", EXIT_STORAGE
    # a bug: one line, the traceback only on request
    text = f"syncd: internal error: {type(exc).__name__}: {exc} (SYNCD_DEBUG=1 shows more)"
    return text, EXIT_INTERNAL


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
