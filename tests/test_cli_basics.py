"""The CLI's basics (issue 10 points 11 and 16): --version, help without a command, errors as
JSON under --json, commands imported only when they run, the record index caught up by the run.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
from click.testing import CliRunner

from conftest import SYNCD, run, run_process
from syncd.cli import cli
from syncd.cli.app import COMMANDS, SyncdGroup
from syncd.errors import PermanentError

COPY = ("copy", "-s", "prod", "-t", "dev", "--entity", "vendors", "--yes")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="syncd")
    return result.exit_code, result.stdout, result.stderr


def modules_after(args: list[str], cwd: Path, *, preload: bool = False) -> tuple[set[str], str]:
    """The modules a fresh interpreter holds after running the CLI with `args`, and its stdout.
    With preload, every command's module is imported first (as before issue 10)."""
    preamble = ("import importlib\nfor m in set(COMMANDS.values()):\n"
                "    importlib.import_module('syncd.cli.' + m[0])\n") if preload else ""
    code = ("import json, sys\nfrom syncd.cli import cli\nfrom syncd.cli.app import COMMANDS\n"
            f"{preamble}try:\n    cli.main({args!r}, prog_name='syncd')\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if k != "SYNCD_CONFIG"})
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.strip().splitlines()[-1])), proc.stdout


# -- --version and help without a command ------------------------------------------------


def test_version_prints_the_package_version() -> None:
    code, stdout, _ = invoke("--version")
    assert (code, stdout) == (0, f"syncd {version('syncd')}\n")
    assert version("syncd") == "0.1.0"


def test_bare_syncd_prints_its_help_and_exits_0(tmp_path: Path) -> None:
    proc = subprocess.run([str(SYNCD)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: syncd [OPTIONS] COMMAND") and proc.stderr == ""
    assert all(f"\n  {name} " in proc.stdout for name in COMMANDS)


def test_a_group_without_a_command_prints_its_help_and_exits_0() -> None:
    code, stdout, stderr = invoke("journal")
    assert code == 0 and stderr == ""
    assert stdout.startswith("Usage: syncd journal [OPTIONS] COMMAND")
    assert "verify " in stdout and "rebuild " in stdout


def test_help_lists_every_command_as_the_commands_themselves_say(tmp_path: Path) -> None:
    lazy_modules, lazy = modules_after(["--help"], tmp_path)
    eager_modules, eager = modules_after(["--help"], tmp_path, preload=True)
    assert lazy == eager  # COMMANDS' short help is the commands' own, shortened the same way
    assert "syncd.cli.sync" in eager_modules and "syncd.cli.sync" not in lazy_modules


# -- errors under --json -------------------------------------------------------------------


def test_an_input_error_under_json_is_also_a_json_object_on_stdout(world) -> None:
    assert run(world, *COPY, "--limit", "1", "--json").code == 0  # the command and options exist
    result = run(world, *COPY, "--limit", "many", "--json")  # --json after the bad value too
    assert result.code == 2
    line = result.stderr.strip()
    assert line.startswith("syncd: error: ") and "'many' is not a valid integer" in line
    assert json.loads(result.stdout) == {"error": line, "exit_code": 2}


def test_an_input_error_found_by_the_command_under_json(world) -> None:
    result = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "nope", "--json", "--yes")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert json.loads(result.stdout) == {"error": result.stderr.strip(), "exit_code": 2}


def test_without_json_an_error_leaves_stdout_empty(world) -> None:
    result = run(world, *COPY, "--limit", "many")
    assert result.code == 2 and result.stdout == ""


def test_a_storage_error_under_json(world) -> None:
    text = world.config.read_text()
    world.config.write_text(text.replace('url = "sqlite:///journal.db"',
                                         'url = "sqlite:////proc/nope/journal.db"', 1))
    result = run_process(world, *COPY, "--json")
    assert result.code == 74, result.stderr
    assert json.loads(result.stdout) == {"error": result.stderr.strip(), "exit_code": 74}


def test_a_failed_store_under_json() -> None:
    def boom(as_json: bool) -> None:
        raise PermanentError("prod: GET /v1/schema: connection refused")

    group = SyncdGroup("syncd", commands=[click.Command(
        "boom", callback=boom, params=[click.Option(["--json", "as_json"], is_flag=True)])])
    for args, stdout in ((["boom", "--json"], True), (["boom"], False)):
        result = CliRunner().invoke(group, args)
        line = "syncd: failed: prod: GET /v1/schema: connection refused"
        assert (result.exit_code, result.stderr) == (1, line + "\n")
        assert result.stdout == (json.dumps({"error": line, "exit_code": 1}) + "\n" if stdout else "")


# -- what a command imports ----------------------------------------------------------------


def test_help_imports_neither_the_journal_nor_any_heavy_library(tmp_path: Path) -> None:
    loaded, stdout = modules_after(["--help"], tmp_path)
    assert "Commands:" in stdout
    heavy = {"rich", "anyio", "httpx", "sqlite_utils", "msgspec", "journal", "syncd.config"}
    assert not heavy & loaded, heavy & loaded


def test_a_read_only_command_imports_only_its_own_module(tmp_path: Path) -> None:
    loaded, _ = modules_after(["runs", "--json"], tmp_path)  # no config, no journal: []
    assert "syncd.cli.history" in loaded
    # what planning's progress bar, serving and the daemon need stays out
    unneeded = {"syncd.cli.sync", "syncd.cli.serve", "syncd.cli.daemon", "syncd.cli.schema",
                "rich.progress", "httpx", "uvicorn", "starlette", "prometheus_client", "cronsim"}
    assert not unneeded & loaded, unneeded & loaded


# -- the record index ---------------------------------------------------------------------


def test_a_completed_run_leaves_the_record_index_caught_up(world) -> None:
    result = run(world, "transfer", "-s", "prod", "-t", "dev", "--entity", "videos", "--yes", "--json")
    assert result.code == 0 and result.json()["status"] == "completed", result.stderr
    with sqlite3.connect(world.root / "journal.db") as conn:  # no audit has run
        tracked = conn.execute("SELECT seq FROM tracking WHERE name = 'record_index'").fetchone()
        last = conn.execute("SELECT MAX(seq) FROM events").fetchone()
        indexed = conn.execute("SELECT COUNT(*) FROM record_index").fetchone()[0]
    assert tracked == last and indexed > 0
