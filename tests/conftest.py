"""Shared fixtures: a real grace-like world on disk and ways to run the real CLI against it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import world as world_module  # noqa: E402  (scripts/world.py)

from syncd import journaling  # noqa: E402
from syncd.cli import cli  # noqa: E402
from syncd.planner import context as planner_context  # noqa: E402

SYNCD = Path(sys.executable).parent / "syncd"


@contextmanager
def checkpoint_every(roots: int, *, group_records: int | None = 1, overlap: bool = True) -> Iterator[None]:
    """Plans in groups of `roots` roots, in this process and in the syncd processes the tests
    start; with `group_records` 1 each group is sealed by a checkpoint, so a small world's
    transfer makes several and, with --yes, is applied by its applier process while it plans
    (`overlap` False: planned, then applied, in one process)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNCD_CHUNK_ROOTS", str(roots))
        mp.setattr(planner_context, "CHUNK", roots)
        if group_records is not None:
            mp.setenv("SYNCD_GROUP_RECORDS", str(group_records))
            mp.setattr(journaling, "GROUP_RECORDS", group_records)
        if not overlap:
            mp.setenv("SYNCD_OVERLAP", "0")
        yield


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(world: world_module.World, *args: str, input: str | None = None) -> Result:
    """The CLI in-process (fast); the world's syncd.toml is the config."""
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def run_process(world: world_module.World, *args: str, env: dict[str, str] | None = None,
                input: str | None = None, timeout: float = 120) -> Result:
    """The CLI as a real process (for signals and crashes)."""
    proc = subprocess.run([str(SYNCD), "--config", str(world.config), *args], input=input,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def world(tmp_path: Path) -> world_module.World:
    return world_module.build_world(tmp_path / "world", videos=20)


def snapshot(w: world_module.World, db: Path | None = None) -> dict[str, list[tuple]]:
    return world_module.snapshot(db or w.dev_db, root=w.root)


def files(w: world_module.World) -> dict[str, str]:
    return world_module.file_tree(w.dev_files)
