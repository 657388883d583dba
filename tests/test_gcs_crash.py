"""Invariant 2 with gs:// files: a real `syncd transfer --copy-files` process is killed
(SIGKILL) while copying objects, then resumed; the target database and bucket must equal an
uninterrupted run's (same rows, same objects with the same bytes, each copied once)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

import world as world_module
from conftest import SYNCD, run, run_process, snapshot
from gcs_emulator import Emulator, emulator  # noqa: F401  (fixture)
from syncd import failpoints

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes", "--json")
VIDEOS = 6
SEED = 7


@dataclass
class Reference:
    snapshot: dict[str, list[tuple]]
    objects: dict[str, tuple[str, str]]  # name → (size, crc32c)
    entries: list[dict[str, Any]]
    hits: Counter[str]


def objects(emu: Emulator) -> dict[str, tuple[str, str]]:
    return {k: (o["size"], o["crc32c"]) for k, o in emu.objects("co-dev-data").items()}


def gs_world(root: Path, emu: Emulator) -> world_module.World:
    w = world_module.build_world(root, videos=VIDEOS, seed=SEED, gcs_bucket="co-prod-data")
    emu.create_bucket("co-dev-data")
    return w


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """An uninterrupted run on its own emulator, counting how often each failpoint is hit."""
    root = tmp_path_factory.mktemp("gcs-reference")
    emu = Emulator(root / "gcs-data").start()
    hits: Counter[str] = Counter()
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:
            hits[name] += 1

    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in emu.env().items():
                mp.setenv(key, value)
            mp.setattr(failpoints, "hit", count)
            w = gs_world(root / "w", emu)
            result = run(w, *TRANSFER)
            assert result.code == 0, result.stderr
            show = run(w, "show", result.json()["run_id"], "--json").json()
            ref = Reference(snapshot(w), objects(emu), show["entries"], hits)
    finally:
        emu.stop()
    n = len(ref.objects)
    assert n == len(list(world_module.blob_uris(w.prod_db))) > 40
    assert ref.hits["file.after-copy"] == ref.hits["file.before-rename"] == n
    yield ref


def resume_and_compare(w: world_module.World, emu: Emulator, ref: Reference) -> None:
    found = run(w, "runs", "--json").json()
    assert len(found) == 1, found
    run_id = found[0]["run_id"]
    resumed = run_process(w, "resume", run_id, "--yes", "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["status"] == "completed"
    assert objects(emu) == ref.objects
    assert snapshot(w) == ref.snapshot
    show = run(w, "show", run_id, "--json").json()
    assert [(e["entity"], e["records"], e["state"]) for e in show["entries"]] == \
        [(e["entity"], e["records"], "done") for e in ref.entries]
    for entry in show["entries"]:  # each planned record and file done once, none failed
        assert entry["created"] + entry["skipped"] == entry["records"] and entry["failed"] == 0
    assert show["applied"]["files"]["copied"] == len(ref.objects)
    assert run(w, "journal", "verify").code == 0


KILLS = [("file.before-rename", 1), ("file.after-copy", 1), ("file.after-copy", 17),
         ("file.before-rename", 30), ("file.after-copy", "last"), ("apply.after-effect", 1)]


@pytest.mark.parametrize(("point", "n"), KILLS, ids=[f"{p}:{n}" for p, n in KILLS])
def test_sigkill_while_copying_then_resume_equals_uninterrupted_run(
        tmp_path: Path, emulator: Emulator, reference: Reference, point: str, n: int | str) -> None:
    nth = reference.hits[point] if n == "last" else n
    w = gs_world(tmp_path / "w", emulator)
    killed = run_process(w, *TRANSFER, "--file-workers", "4",
                         env={"SYNCD_FAILPOINT": f"{point}:{nth}"})
    assert killed.code == -signal.SIGKILL, killed.stderr
    landed, total = len(objects(emulator)), len(reference.objects)
    if point == "file.before-rename":  # the Nth copy was about to be sent: fewer landed
        assert landed < nth
    elif point == "file.after-copy":  # the Nth copy landed; others may have, too
        assert nth <= landed <= total
        assert landed < total or n == "last"
    else:  # apply.after-effect:1: the files entry's copies all landed, its outcome was lost
        assert objects(emulator) == reference.objects
    resume_and_compare(w, emulator, reference)


def test_external_sigkill_while_copying_then_resume_equals_uninterrupted_run(
        tmp_path: Path, emulator: Emulator, reference: Reference) -> None:
    w = gs_world(tmp_path / "w", emulator)
    proc = subprocess.Popen([str(SYNCD), "--config", str(w.config), *TRANSFER, "--file-workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SYNCD_FAILPOINT": ""})
    deadline = time.monotonic() + 60
    while not objects(emulator) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # until the first object lands
    assert proc.poll() is None, "the run ended before the signal: nothing was tested"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # the signal landed mid-run
    resume_and_compare(w, emulator, reference)
