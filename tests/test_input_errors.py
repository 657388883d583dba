"""Invariant 8: bad input fails before any write: one line on stderr, exit 2, no traceback."""
from __future__ import annotations

import pytest

from conftest import files, run, run_process, snapshot

T = ("transfer", "-s", "prod", "-t", "dev", "--yes")
C = ("copy", "-s", "prod", "-t", "dev", "--yes")

CASES = {
    "unknown source": (("copy", "-s", "nope", "-t", "dev", "--entity", "videos", "--yes"), "unknown environment 'nope'"),
    "unknown target": (("copy", "-s", "prod", "-t", "qa", "--entity", "videos", "--yes"), "unknown environment 'qa'"),
    "same env": (("copy", "-s", "prod", "-t", "prod", "--entity", "videos", "--yes"), "same environment"),
    "unknown entity": ((*C, "--entity", "widgets"), "unknown entity 'widgets'"),
    "unknown field": ((*C, "--entity", "videos", "-f", "colour:eq:red"), "unknown field 'colour'"),
    "unknown op": ((*C, "--entity", "videos", "-f", "title:like2:x"), "unknown filter op 'like2'"),
    "malformed filter": ((*C, "--entity", "videos", "-f", "title"), "title"),
    "bad in list": ((*T, "-f", "id:in:"), "id:in:"),
    "non-numeric value": ((*T, "-f", "duration_s:gt:long"), "duration_s"),
    "negative limit": ((*T, "-l", "-3"), "--limit"),
    "not an integer limit": ((*T, "-l", "ten"), "ten"),
    "unknown clear field": ((*C, "--entity", "videos", "--clear", "nope"), "unknown field 'nope'"),
    "unknown option": ((*T, "--bogus"), "--bogus"),
    "dry-run with plan-only": ((*T, "--dry-run", "--plan-only"), "exclude"),
    "copy without entity": (C, "--entity"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world, name: str) -> None:
    args, needle = CASES[name]
    before = snapshot(world)
    result = run(world, *args)
    assert result.code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
    assert snapshot(world) == before
    assert files(world) == {}
    assert not (world.root / "journal.db").exists()


def test_unknown_or_ambiguous_run(world) -> None:
    assert run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "vendors", "--yes").code == 0
    assert run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "locations", "--yes").code == 0
    for text, needle in (("nope-run", "nope-run"), ("2", "ambiguous")):
        result = run(world, "resume", text, "--yes")
        assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
        assert needle in result.stderr.lower()


def test_malformed_config_is_one_line_naming_the_key(world) -> None:
    world.config.write_text(world.config.read_text().replace("records = ", "recordz = ", 1))
    result = run(world, *T)
    assert result.code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "recordz" in result.stderr


def test_invalid_toml_is_one_line(world) -> None:
    world.config.write_text("[environments.prod\nrecords = 1\n")
    result = run(world, *T)
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "TOML" in result.stderr


def test_missing_blob_map_fails_before_writing(world) -> None:
    text = world.config.read_text()
    world.config.write_text("\n".join(l for l in text.splitlines() if not l.startswith("blob_map")))
    before = snapshot(world)
    result = run(world, *T, "--copy-files")
    assert result.code == 2, result.stderr
    assert "blob_map" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(world) == before and files(world) == {}


def test_missing_database_file(world) -> None:
    world.prod_db.rename(world.root / "elsewhere.db")
    result = run(world, *T)
    assert result.code == 2 and "database file not found" in result.stderr


def test_real_process_prints_no_traceback(world) -> None:
    result = run_process(world, *C, "--entity", "videos", "-f", "x:eq:1")
    assert result.code == 2
    assert result.stderr.strip() == "syncd: error: unknown field 'x' on entity 'videos' in filter 'x:eq:1'"
