"""Invariant 2 over HTTP: SIGKILL the client mid-transfer, resume, and get a clean run's result.

Both environments sit behind real `syncd serve` processes, which keep running while the client
dies. The client is killed at failpoints (planning, before an entry, after an entry's effect
but before its outcome is journaled, mid file copies) and from outside while applying, with a
page size so small that every entry takes several requests, so the kill can land between the
requests of one entry. Resuming must give what an uninterrupted SQLite → SQLite run gives
(tests/test_crash.py's reference and checks): same rows, files and journal.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import SYNCD, snapshot
from http_fixtures import http_world
from test_crash import (SEED, SIGNAL_VIDEOS, SWEEP_VIDEOS, TRANSFER, Reference, finish,
                        reference_run, resume_and_check, run_process, wait_for_status)

POINTS = [("plan.after-append", 1), ("apply.before-entry", 4), ("apply.after-effect", 3),
          ("apply.after-effect", 9), ("apply.after-outcome", 6), ("file.after-copy", 60)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference_run(tmp_path_factory.mktemp("http-crash-ref") / "w", SWEEP_VIDEOS)


@pytest.fixture(scope="module")
def big_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference_run(tmp_path_factory.mktemp("http-crash-big-ref") / "w", SIGNAL_VIDEOS)


@pytest.mark.parametrize(("point", "n"), POINTS, ids=[f"{p}:{n}" for p, n in POINTS])
def test_sigkill_client_at_failpoint_then_resume_equals_clean_run(
        tmp_path: Path, reference: Reference, point: str, n: int) -> None:
    assert n <= reference.hits(point)
    hw = http_world(tmp_path / "w", videos=SWEEP_VIDEOS, seed=SEED, serve_args=("--max-page", "40"))
    try:
        initial = snapshot(hw.world)
        killed = run_process(hw.world, *TRANSFER, env={"SYNCD_FAILPOINT": f"{point}:{n}"})
        assert killed.code == -signal.SIGKILL, killed.stderr
        assert killed.stdout == ""
        resume_and_check(hw.world, reference, initial)
    finally:
        hw.stop()
    assert "Traceback" not in hw.logs()


def test_external_sigkill_while_applying_then_resume_equals_clean_run(
        tmp_path: Path, big_reference: Reference) -> None:
    hw = http_world(tmp_path / "w", videos=SIGNAL_VIDEOS, seed=SEED, serve_args=("--max-page", "15"))
    try:
        initial = snapshot(hw.world)
        proc = subprocess.Popen([str(SYNCD), "--config", str(hw.world.config), *TRANSFER],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "SYNCD_FAILPOINT": ""})
        wait_for_status(hw.world, proc, "applying")
        assert proc.poll() is None, "the run ended before the signal: nothing was tested"
        proc.send_signal(signal.SIGKILL)
        result = finish(proc)
        assert result.code == -signal.SIGKILL, result.stderr  # the signal landed mid-run
        resume_and_check(hw.world, big_reference, initial)
    finally:
        hw.stop()
    assert "Traceback" not in hw.logs()
