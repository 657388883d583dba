"""The emulator goes away in the middle of a run, then comes back (grace semantics: file
failures never stop records; `resume` retries exactly what failed)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import world as world_module
from conftest import run
from gcs_emulator import Emulator, emulator  # noqa: F401  (fixture)
from syncd import failpoints

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes", "--json")
VIDEOS = 5
STOP_AFTER = 6  # copies that land before the emulator is stopped


class CopyCounter:
    """Counts copies as they land (the file.after-copy failpoint, reached in worker threads)
    and runs an action once, at the Nth."""

    def __init__(self, at: int | None = None, action: Any = None) -> None:
        self.copies = 0
        self.at, self.action = at, action
        self.lock = threading.Lock()

    def __call__(self, name: str) -> None:
        if name != "file.after-copy":
            return
        with self.lock:
            self.copies += 1
            if self.copies == self.at:
                self.action()


def test_emulator_stopped_mid_run_then_resume_copies_exactly_the_rest(
        tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world_module.build_world(tmp_path / "w", videos=VIDEOS, gcs_bucket="co-prod-data")
    emulator.create_bucket("co-dev-data")
    total = len(list(world_module.blob_uris(w.prod_db)))

    first = CopyCounter(at=STOP_AFTER, action=emulator.stop)
    monkeypatch.setattr(failpoints, "hit", first)
    result = run(w, *TRANSFER)
    assert result.code == 1, result.stderr
    out = result.json()
    assert out["status"] == "failed"
    files = out["applied"]["files"]
    assert files["copied"] >= STOP_AFTER and files["failed"] > 0
    assert files["copied"] + files["failed"] == total
    assert "cannot reach GCS" in result.stderr and "resume" in result.stderr
    # every record was created all the same, pointing at where its file belongs
    for name, counts in out["applied"]["entities"].items():
        planned = out["plan"]["entities"][name]
        assert counts["created"] == planned["create"] and counts["failed"] == 0, name
    uris = sorted(world_module.blob_uris(w.dev_db))
    assert len(uris) == total and all(u.startswith("gs://co-dev-data/") for u in uris)
    show = run(w, "show", out["run_id"], "--json").json()
    assert [e["state"] for e in show["entries"] if e["entity"] == "files"] == ["failed"]

    emulator.start()  # same port, same data
    landed = emulator.objects("co-dev-data")  # a copy cut off in flight may have landed too
    assert STOP_AFTER <= len(landed) < total
    second = CopyCounter()
    monkeypatch.setattr(failpoints, "hit", second)
    resumed = run(w, "resume", out["run_id"], "--yes", "--json", "--file-workers", "4")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["status"] == "completed"
    assert second.copies == total - len(landed)  # exactly the rest
    after = emulator.objects("co-dev-data")
    assert sorted(after) == sorted(u.removeprefix("gs://co-dev-data/") for u in uris)
    for name, obj in landed.items():  # what the first attempt copied was not written again
        assert after[name]["generation"] == obj["generation"]
    prod = emulator.objects("co-prod-data")
    assert {k: o["crc32c"] for k, o in after.items()} == {k: prod[k]["crc32c"] for k in after}
    # the journal tells what a clean run tells: every file created once, by this run
    files_entry = [e for e in run(w, "show", out["run_id"], "--json").json()["entries"]
                   if e["entity"] == "files"]
    assert [(e["state"], e["created"], e["failed"]) for e in files_entry] == [("done", total, 0)]
