"""The core's scenarios with the source, the target, or both behind a real `syncd serve`.

One script of commands (copy with filters and --clear, dry run, transfer with files, --update,
plan-only + resume, natural keys, integer keys with self-references, BLOB/REAL/64-bit values,
audit, journal verify) is played on a SQLite → SQLite world and then, at the same path, on a
world whose environments are served over HTTP. After every step the exit code, the JSON
output, the target's rows, the copied files, and every journaled record with its content hash
must be identical: the wire changes nothing, not even a byte of a row.
"""
from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import world as world_module
from conftest import checkpoint_every, files, run, snapshot
from http_fixtures import HttpWorld, http_world

MODES = {"source": ("prod",), "target": ("dev",), "both": ("prod", "dev")}
SEED = 11
BLOB = b'\x00\xff{"$bytes": "AAAA"}\n'  # bytes that look like the wire's own BLOB marker


@dataclass
class Step:
    label: str
    code: int
    output: Any  # the JSON output without its run id, or stdout
    target: dict[str, list[tuple]]
    files: dict[str, str]
    journaled: list[tuple] | None  # (entity, key, op, outcome, hash) of the step's run


def add_extra_tables(w: world_module.World) -> None:
    """Integer keys, a self-reference, and values JSON cannot carry plainly."""
    ddl = """
    CREATE TABLE folders (id INTEGER PRIMARY KEY, name TEXT, parent_id INTEGER REFERENCES folders(id));
    CREATE TABLE attachments (id INTEGER PRIMARY KEY, data BLOB, ratio REAL, big INTEGER, note TEXT);
    """
    for db in (w.prod_db, w.dev_db):
        with sqlite3.connect(db) as conn:
            conn.executescript(ddl)
    with sqlite3.connect(w.prod_db) as conn:
        conn.executemany("INSERT INTO folders VALUES (?, ?, ?)",
                         [(1, "leaf", 2), (2, "mid", 3), (3, "root", None), (4, "other", None)])
        conn.executemany("INSERT INTO attachments VALUES (?, ?, ?, ?, ?)", [
            (1, BLOB, 1.0, 2**63 - 1, 'ünïcödé "quoted" {"$bytes": "x"}'),
            (2, None, 0.1 + 0.2, -(2**63), None),
            (3, b"", 1e-300, 0, ""),
        ])


def edit(db: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


def play(w: world_module.World) -> list[Step]:
    steps: list[Step] = []

    def step(label: str, *args: str, before: Callable[[], None] | None = None) -> dict[str, Any]:
        if before:
            before()
        result = run(w, *args)
        output: Any = result.stdout
        run_id = None
        if "--json" in args and result.stdout.strip():
            output = result.json()
            run_id = output.pop("run_id", None)
        journaled = None
        if run_id:
            show = run(w, "show", run_id, "--json", "-v").json()
            journaled = [(r["entity"], r["key"], r["op"], r["outcome"], r["hash"])
                         for r in show["records"]]
        steps.append(Step(label, result.code, output, snapshot(w), files(w), journaled))
        return {"run_id": run_id, "code": result.code, "stderr": result.stderr}

    sync = ("-s", "prod", "-t", "dev")
    first, second = (w.video_ids or [])[:2]
    step("copy with filters and --clear", "copy", *sync, "--entity", "videos",
         "-f", "collection_meta.data_source:eq:internal", "-f", "duration_s:gt:30", "-l", "5",
         "--clear", "storage_meta", "--yes", "--json")
    step("dry run", "transfer", *sync, "--copy-files", "--dry-run", "--json")
    step("transfer with files", "transfer", *sync, "-l", "8", "--copy-files", "--yes", "--json")
    step("--update", "transfer", *sync, "-l", "8", "--update", "--yes", "--json",
         before=lambda: (edit(w.prod_db, "UPDATE videos SET title = 'renamed' WHERE id = ?", first),
                         edit(w.dev_db, "UPDATE videos SET duration_s = 1.5 WHERE id = ?", second)))
    planned = step("plan only", "transfer", *sync, "--copy-files", "--plan-only", "--json")
    step("resume", "resume", planned["run_id"], "--yes", "--json")
    step("natural keys, flat", "copy", *sync, "--entity", "devices", "--yes", "--json")
    step("integer keys, parents first", "copy", *sync, "--entity", "folders", "-f", "id:eq:1",
         "--yes", "--json")
    step("BLOB, REAL and 64-bit values", "copy", *sync, "--entity", "attachments", "--yes", "--json")
    step("audit", "audit", first, "--entity", "videos", "--json")
    step("journal verify", "journal", "verify")
    return steps


def comparable(steps: list[Step]) -> list[Step]:
    for s in steps:
        if s.label == "audit":
            for h in s.output["history"]:
                del h["run_id"], h["at"], h["planned_at"], h["applied_at"]
    return steps


@pytest.fixture(scope="module", autouse=True)
def overlapped() -> Iterator[None]:
    """Transfers of more than 3 roots are applied while they are planned (architecture §7)."""
    with checkpoint_every(3):
        yield


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Every world of this module is built at the same path, one after the other, so blob URIs
    # (which hold the absolute path) and the content hashes of rows holding them are equal.
    return tmp_path_factory.mktemp("http-sync") / "w"


@pytest.fixture(scope="module")
def reference(place: Path) -> list[Step]:
    w = world_module.build_world(place, videos=20, seed=SEED)
    add_extra_tables(w)
    steps = comparable(play(w))
    assert [s.code for s in steps] == [0] * len(steps), [(s.label, s.code) for s in steps]
    shutil.rmtree(place)
    return steps


def build_http(place: Path, behind: tuple[str, ...]) -> HttpWorld:
    hw = http_world(place, videos=20, seed=SEED, behind=behind)
    add_extra_tables(hw.world)  # already serving: the servers describe again on GET /schema
    return hw


@pytest.mark.parametrize("mode", MODES)
def test_scenarios_over_http_equal_sqlite_to_sqlite(place: Path, reference: list[Step],
                                                    mode: str) -> None:
    hw = build_http(place, MODES[mode])
    try:
        prod_before = snapshot(hw.world, hw.world.prod_db)
        steps = comparable(play(hw.world))
        for got, want in zip(steps, reference, strict=True):
            assert got.label == want.label
            assert got.code == want.code, (got.label, got.output)
            assert got.output == want.output, got.label
            assert got.target == want.target, got.label
            assert got.files == want.files, got.label
            assert got.journaled == want.journaled, got.label
        assert snapshot(hw.world, hw.world.prod_db) != prod_before  # the script edited prod...
        edit(hw.world.prod_db, "UPDATE videos SET title = ? WHERE title = 'renamed'",
             next(r[1] for r in prod_before["videos"] if r[0] == hw.world.video_ids[0]))
        assert snapshot(hw.world, hw.world.prod_db) == prod_before  # ...and syncd never did
        logs = hw.logs()
        for env in MODES[mode]:  # the traffic really went through the servers
            assert "/v1/entities/" in hw.servers[env].output()
        assert "Traceback" not in logs
    finally:
        hw.stop()
        shutil.rmtree(place, ignore_errors=True)
