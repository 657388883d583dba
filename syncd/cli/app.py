"""The click application: the command group, error mapping and signal handling.

Exit codes (README.md's "Exit codes" says the same); every error is one line on stderr:
  0    done (`--help`, `--version`, and a group named without a command, which prints its help).
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
With `--json`, that error line also goes to stdout as one object, {"error": LINE, "exit_code": N},
so a script reading stdout always gets an answer.

Startup: this module imports only click. Commands are imported when they run (COMMANDS), and
the journal, config and rich are imported by the functions that need them, so `--help` and the
read-only commands load no more than they use.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from journal import Journal

    from ..config import Config

EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL, EXIT_STORAGE = 1, 2, 70, 74

# Every command: the module of syncd/cli/ that defines it (its decorators register it on `cli`
# when imported) and its short help, so `syncd --help` lists every command without importing
# any. tests/test_cli_basics.py checks this table against the commands themselves.
COMMANDS: dict[str, tuple[str, str]] = {
    "copy": ("sync", "Copy records and every parent they need (flat: no children, no files)."),
    "transfer": ("sync", "Transfer roots with their children, parents and (optionally) files."),
    "resume": ("sync", "Apply what RUN has not applied yet."),
    "cancel": ("sync", "Abandon RUN: it is never applied further (what it applied stays)."),
    "move": ("sync", "Move roots and everything below them to another scope, in one transaction with checks."),
    "clone": ("sync", "Clone roots and their children as NEW records under new keys (same or another environment)."),
    "runs": ("history", "Runs, newest first: id, kind, source → target, status, record counts, start time."),
    "show": ("history", "The plan of RUN and its progress per entity (per record with -v)."),
    "audit": ("history", "Every journaled operation on the record KEY, oldest first: by when it was applied, or planned if it was not (JSON: \"at\", and \"at_is\" says which)."),
    "log": ("history", "The journal's events, oldest first."),
    "journal": ("history", "Check or rebuild the journal, or print its head."),
    "export": ("archive", "Export records (a selection, --all, or --label) into a zip archive, journaled."),
    "import": ("archive", "Import an archive into ENV: a transfer from it, with conflicts decided."),
    "backup": ("archive", "Export every record of ENV into a zip archive (export --all)."),
    "restore": ("archive", "Make ENV's records of the archive's entities equal to the archive (backup first)."),
    "revert": ("archive", "Undo what RUN applied, as a new run; records changed since are left alone."),
    "archive": ("archive", "Show or verify an archive file."),
    "schema": ("schema", "Keys, references, children, natural keys and dependency order of ENV."),
    "serve": ("serve", "Serve ENV's records over HTTP (a SQLite or Postgres environment: any "
                       "store the registry marks servable)."),
    "daemon": ("daemon", "Run the jobs of syncd.toml on their schedules, and runs queued with --queue."),
    "worker": ("worker", "Apply entries of runs planned with --workers, sharing them with other workers (Postgres journal)."),
    "jobs": ("daemon", "The jobs of syncd.toml with their last and next runs; `jobs run NAME` "
                       "runs one now."),
}


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
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
        from ..render import err  # loaded already by any command that runs long enough to stop

        err.print("[yellow]stopping after the entry in flight (again to force)…[/]")

    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


STOP = Stop()


class SyncdGroup(click.Group):
    """Imports a command's module only when it is asked for, and maps every expected error to
    one line on stderr and an exit code (no tracebacks)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS.keys() | self.commands.keys())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"{__package__}.{COMMANDS[cmd_name][0]}")
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's list of commands, with the short help of COMMANDS for those not imported:
        a stand-in command shortens it exactly as the real one would."""
        listed = [(name, self.commands.get(name) or click.Command(name, help=COMMANDS[name][1]))
                  for name in self.list_commands(ctx)]
        listed = [(name, command) for name, command in listed if not command.hidden]
        if not listed:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in listed])

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        as_json = wants_json(sys.argv[1:] if args is None else args)
        try:
            return super().main(args, *rest, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # `syncd`, `syncd journal`: as --help
            click.echo(exc.ctx.get_help(), color=exc.ctx.color)
        except click.exceptions.Abort:
            sys.exit(EXIT_FAILED)
        except click.ClickException as exc:
            fail(f"syncd: error: {exc.format_message()}", EXIT_INPUT, as_json)
        except Exception as exc:
            fail(*classify(exc), as_json)
        return None


def wants_json(args: Sequence[str]) -> bool:
    """Whether `--json` was given. Read from the arguments, not the parsed options: an error
    can come before click has parsed the option (a bad value earlier on the line)."""
    args = list(args)
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def classify(exc: Exception) -> tuple[str, int]:
    """The line and exit code of an error raised while a command ran. Its error trees are
    imported only now: they come with the journal, which `--help` never needs."""
    from journal import JournalError, JournalStorageError

    from ..errors import ConflictError, InputError, Interrupted, RunStateError, StoreUnavailable, SyncdError

    if isinstance(exc, (JournalStorageError, StoreUnavailable)):  # the disk refused, not the input
        return f"syncd: error: {exc}", EXIT_STORAGE
    if isinstance(exc, ConflictError):  # the input is fine; the environments disagree
        return f"syncd: failed: {exc}", EXIT_FAILED
    if isinstance(exc, (InputError, RunStateError, JournalError)):
        return f"syncd: error: {exc}", EXIT_INPUT
    if isinstance(exc, Interrupted):
        return ("Interrupted while planning (a transfer applies what its checkpoints sealed as it goes)."
                " `syncd resume RUN` (`syncd runs` names it) plans on and applies the rest.",
                STOP.exit_code())
    if isinstance(exc, SyncdError):
        return f"syncd: failed: {exc}", EXIT_FAILED
    if file_error(exc) is None and os.environ.get("SYNCD_DEBUG"):
        raise exc
    return unexpected(exc)


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


def fail(message: str, code: int, as_json: bool = False) -> NoReturn:
    click.echo(message, err=True)  # plain: one line, never wrapped or styled
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}))
    sys.exit(code)


@click.group(cls=SyncdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="syncd", prog_name="syncd", message="%(prog)s %(version)s")
@click.option("--config", "config_path", metavar="PATH", help="syncd.toml (default: $SYNCD_CONFIG, ./syncd.toml)")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Journaled, resumable, auditable sync of records and files between environments."""
    ctx.obj = config_path


def config_of(ctx: click.Context, *, required: bool = True) -> Config:
    from ..config import load_config

    return load_config(ctx.find_root().obj, required=required)


def existing_journal(ctx: click.Context) -> Journal:
    """The journal for commands that only read it: never creates an empty one."""
    from .. import journals

    return journals.journal_for(config_of(ctx, required=False), create=False)
