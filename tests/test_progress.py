"""The progress bar counts what is planned, from the start, and shows failed file copies."""
from __future__ import annotations

from pathlib import Path

import anyio

from conftest import run
from syncd import journals, operations
from syncd.applier import Progress
from syncd.config import load_config


def test_progress_knows_every_planned_file_up_front_and_counts_failures(world) -> None:
    planned = run(world, "transfer", "-s", "prod", "-t", "dev", "-l", "2", "--copy-files",
                  "--plan-only", "--json")
    assert planned.code == 0, planned.stderr
    report = planned.json()
    to_copy = report["plan"]["files"]["copy"]
    assert to_copy >= 2
    shown = run(world, "show", report["run_id"], "-v", "--json").json()
    source = next(r["key"] for r in shown["records"] if r["op"] == "copy")
    Path(source.removeprefix("file://")).unlink()  # its copy fails; the others go on

    started: list[tuple[int, int]] = []
    done: list[bool] = []
    progress = Progress(on_start=lambda records, files: started.append((records, files)),
                        on_file=lambda nbytes, ok: done.append(ok))
    config = load_config(str(world.config))
    with journals.journal_for(config) as journal:
        result = anyio.run(lambda: operations.apply(config, journal, report["run_id"], progress=progress))
    entries = run(world, "show", report["run_id"], "--json").json()["entries"]
    records = sum(e["records"] for e in entries if e["op"] != "copy")  # creates, updates, matches
    assert started == [(records, to_copy)]  # the whole run's totals, before the first entry
    assert len(done) == to_copy and done.count(False) == 1
    assert result.status == "failed"


def test_the_bar_says_how_many_files_failed(world) -> None:
    victim = next(p for p in sorted(world.prod_files.rglob("*")) if p.is_file())
    victim.unlink()
    result = run(world, "transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes")
    assert result.code == 1
    assert "1 failed" in result.stderr
