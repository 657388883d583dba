"""Invariant 8: bad input fails before any write: one line on stderr, exit 2, no traceback.

Each case checks the reason the line gives (not merely an echo of the bad input, which any
message would contain) and that nothing was written: target rows, copied files, the source,
and the journal (not even created).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import world as world_module
from conftest import Result, files, run, run_process, snapshot
from journal import open_journal

T = ("transfer", "-s", "prod", "-t", "dev", "--yes")
C = ("copy", "-s", "prod", "-t", "dev", "--yes")

# name: (arguments, what the one line must say: the reason, and the culprit where it is named)
CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "unknown source": (("copy", "-s", "nope", "-t", "dev", "--entity", "videos", "--yes"),
                       ("unknown environment 'nope'",)),
    "unknown target": (("copy", "-s", "prod", "-t", "qa", "--entity", "videos", "--yes"),
                       ("unknown environment 'qa'",)),
    "same env": (("copy", "-s", "prod", "-t", "prod", "--entity", "videos", "--yes"),
                 ("same environment",)),
    "unknown entity": ((*C, "--entity", "widgets"), ("unknown entity 'widgets'",)),
    "unknown field": ((*C, "--entity", "videos", "-f", "colour:eq:red"), ("unknown field 'colour'",)),
    "unknown op": ((*C, "--entity", "videos", "-f", "title:like2:x"), ("unknown filter op 'like2'",)),
    "malformed filter": ((*C, "--entity", "videos", "-f", "title"),
                         ("malformed filter 'title'", "key:op:value")),
    "bad in list": ((*T, "-f", "id:in:"), ("a list in brackets",)),
    "non-numeric value": ((*T, "-f", "duration_s:gt:long"), ("real value expected", "'long'")),
    "negative limit": ((*T, "-l", "-3"), ("--limit", "must be")),
    "not an integer limit": ((*T, "-l", "ten"), ("not a valid integer",)),
    "unknown clear field": ((*C, "--entity", "videos", "--clear", "nope"), ("unknown field 'nope'",)),
    "unknown option": ((*T, "--bogus"), ("No such option",)),
    "dry-run with plan-only": ((*T, "--dry-run", "--plan-only"), ("exclude each other",)),
    "copy without entity": (C, ("Missing option", "--entity")),
}


def one_line(result: Result) -> str:
    """The single stderr line of a clean input error (exit 2, no traceback)."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("syncd: error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def journal_files(w: world_module.World) -> list[str]:
    return sorted(p.name for p in w.root.glob("journal.db*"))


class Untouched:
    """Everything a run could write, before it; `check()` proves none of it changed."""

    def __init__(self, w: world_module.World, source: Path | None = None) -> None:
        self.w = w
        self.source = source or w.prod_db
        self.target = snapshot(w)
        self.prod = snapshot(w, self.source)
        self.files = files(w)
        self.journal = journal_files(w)
        self.events = open_journal(w.root / "journal.db").last_seq() if self.journal else None

    def check(self) -> None:
        assert snapshot(self.w) == self.target
        assert snapshot(self.w, self.source) == self.prod
        assert files(self.w) == self.files
        assert journal_files(self.w) == self.journal
        if self.events is not None:
            assert open_journal(self.w.root / "journal.db").last_seq() == self.events


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world, name: str) -> None:
    args, reasons = CASES[name]
    before = Untouched(world)
    assert before.journal == []
    line = one_line(run(world, *args))
    for reason in reasons:
        assert reason in line, (reason, line)
    before.check()
    assert files(world) == {}


def test_unknown_or_ambiguous_run(world) -> None:
    assert run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "vendors", "--yes").code == 0
    assert run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "locations", "--yes").code == 0
    run_ids = [r["run_id"] for r in run(world, "runs", "--json").json()]
    assert len(run_ids) == 2 and all(r.startswith("2") for r in run_ids)
    before = Untouched(world)
    for text, reason in (("nope-run", "no run matches 'nope-run'"), ("2", "ambiguous")):
        line = one_line(run(world, "resume", text, "--yes"))
        assert reason in line.lower(), line
        before.check()


def test_malformed_config_is_one_line_naming_the_key(world) -> None:
    world.config.write_text(world.config.read_text().replace("records = ", "recordz = ", 1))
    before = Untouched(world)
    line = one_line(run(world, *T))
    assert "unknown key 'recordz'" in line
    before.check()


def test_invalid_toml_is_one_line(world) -> None:
    world.config.write_text("[environments.prod\nrecords = 1\n")
    before = Untouched(world)
    line = one_line(run(world, *T))
    assert "invalid TOML" in line and "line 1" in line
    before.check()


def test_missing_blob_map_fails_before_writing(world) -> None:
    text = world.config.read_text()
    world.config.write_text("\n".join(l for l in text.splitlines() if not l.startswith("blob_map")))
    before = Untouched(world)
    line = one_line(run(world, *T, "--copy-files"))
    assert "no blob_map entry" in line and "environments.dev" in line
    before.check()
    assert files(world) == {}


def test_missing_database_file(world) -> None:
    moved = world.root / "elsewhere.db"
    world.prod_db.rename(moved)
    before = Untouched(world, source=moved)
    line = one_line(run(world, *T))
    assert "environment 'prod'" in line and "database file not found" in line
    before.check()


def test_real_process_prints_no_traceback(world) -> None:
    before = Untouched(world)
    result = run_process(world, *C, "--entity", "videos", "-f", "x:eq:1")
    assert result.code == 2
    assert result.stderr.strip() == "syncd: error: unknown field 'x' on entity 'videos' in filter 'x:eq:1'"
    assert result.stdout == ""
    before.check()
