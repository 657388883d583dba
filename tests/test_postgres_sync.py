"""The core's scenarios with Postgres on either side or both, against SQLite → SQLite.

One script of commands (copy with filters and --clear, dry run, transfer with files,
--update, plan-only + resume, natural keys, integer keys with self-references, bytea/double/
64-bit values, audit, journal verify) is played on a SQLite → SQLite world, then at the same
path with Postgres → Postgres, SQLite → Postgres and Postgres → SQLite (tests/pg_world.py: uuid
keys, timestamptz, jsonb, an enum, an identity key). After every step the exit code, the JSON
output, the target's rows (JSON compared as data: jsonb keeps no key order) and the copied
files must be identical; journaled outcomes too, and their content hashes whenever the source
is the same SQLite file.
"""
from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pg_world
import world as world_module
from conftest import checkpoint_every, files, run, snapshot
from test_http_sync import add_extra_tables

MODES = {"pg_to_pg": ("prod", "dev"), "sqlite_to_pg": ("dev",), "pg_to_sqlite": ("prod",)}
SEED = 11


@dataclass
class Step:
    label: str
    code: int
    output: Any
    target: dict[str, list[tuple[Any, ...]]]
    files: dict[str, str]
    journaled: list[tuple[Any, ...]] | None


@dataclass
class Place:
    """A world and where each of its environments lives (a SQLite file or a database)."""
    world: world_module.World
    databases: dict[str, str]  # environment → Postgres database, for those in Postgres

    def edit(self, side: str, statement: str, *params: object) -> None:
        if side in self.databases:
            pg_world.execute(self.databases[side], statement.replace("?", "%s"), *params)
            return
        with sqlite3.connect(self.world.prod_db if side == "prod" else self.world.dev_db) as conn:
            conn.execute(statement, params)

    def target(self) -> dict[str, list[tuple[Any, ...]]]:
        if "dev" in self.databases:
            return pg_world.comparable(pg_world.snapshot(self.databases["dev"], self.world.root))
        return pg_world.comparable(snapshot(self.world))

    def drop(self) -> None:
        for db in self.databases.values():
            pg_world.drop_database(db)


def play(place: Place) -> list[Step]:
    w, steps = place.world, []

    def step(label: str, *args: str, before: Callable[[], None] | None = None) -> dict[str, Any]:
        if before:
            before()
        result = run(w, *args)
        output: Any = result.stdout
        run_id = None
        if "--json" in args and result.stdout.strip():
            output = result.json()
            run_id = output.pop("run_id", None)
            for item in output.get("history", []):
                del item["run_id"], item["at"], item["planned_at"], item["applied_at"]
        journaled = None
        if run_id:
            show = run(w, "show", run_id, "--json", "-v").json()
            journaled = [(r["entity"], r["key"], r["op"], r["outcome"], r["hash"])
                         for r in show["records"]]
        steps.append(Step(label, result.code, output, place.target(), files(w), journaled))
        return {"run_id": run_id, "stderr": result.stderr}

    sync = ("-s", "prod", "-t", "dev")
    first, second = (w.video_ids or [])[:2]
    step("copy with filters and --clear", "copy", *sync, "--entity", "videos",
         "-f", "collection_meta.data_source:eq:internal", "-f", "duration_s:gt:30", "-l", "5",
         "--clear", "storage_meta", "--yes", "--json")
    step("dry run", "transfer", *sync, "--copy-files", "--dry-run", "--json")
    step("transfer with files", "transfer", *sync, "-l", "8", "--copy-files", "--yes", "--json")
    step("--update", "transfer", *sync, "-l", "8", "--update", "--yes", "--json",
         before=lambda: (place.edit("prod", "UPDATE videos SET title = 'renamed' WHERE id = ?", first),
                         place.edit("dev", "UPDATE videos SET duration_s = 1.5 WHERE id = ?", second)))
    planned = step("plan only", "transfer", *sync, "--copy-files", "--plan-only", "--json")
    step("resume", "resume", planned["run_id"], "--yes", "--json")
    step("natural keys, flat", "copy", *sync, "--entity", "devices", "--yes", "--json")
    step("integer keys, parents first", "copy", *sync, "--entity", "folders", "-f", "id:eq:1",
         "--yes", "--json")
    step("bytea, double and 64-bit values", "copy", *sync, "--entity", "attachments", "--yes",
         "--json")
    step("audit", "audit", first, "--entity", "videos", "--json")
    step("journal verify", "journal", "verify")
    return steps


def without_hashes(steps: list[Step]) -> list[Step]:
    out = []
    for s in steps:
        output = s.output
        if isinstance(output, dict) and "history" in output:
            output = {**output, "history": [{k: v for k, v in h.items() if k != "hash"}
                                            for h in output["history"]]}
        journaled = None if s.journaled is None else [j[:4] for j in s.journaled]
        out.append(Step(s.label, s.code, output, s.target, s.files, journaled))
    return out


@pytest.fixture(scope="module", autouse=True)
def overlapped() -> Iterator[None]:
    """Transfers of more than 3 roots are applied while they are planned (architecture §7)."""
    with checkpoint_every(3):
        yield


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Every world is built at the same path, one after the other, so blob URIs (which hold
    # the absolute path) are equal.
    return tmp_path_factory.mktemp("pg-sync") / "w"


def build(root: Path, in_postgres: tuple[str, ...]) -> Place:
    w = world_module.build_world(root, videos=20, seed=SEED)
    add_extra_tables(w)
    databases = {}
    for side in in_postgres:
        databases[side] = pg_world.load_world(w, side)
        pg_world.point_config(w, side, databases[side])
    return Place(w, databases)


@pytest.fixture(scope="module")
def reference(place: Path) -> list[Step]:
    steps = play(build(place, ()))
    assert [s.code for s in steps] == [0] * len(steps), [(s.label, s.code) for s in steps]
    shutil.rmtree(place)
    return steps


@pytest.mark.parametrize("mode", MODES)
def test_scenarios_with_postgres_equal_sqlite_to_sqlite(place: Path, reference: list[Step],
                                                        mode: str) -> None:
    where = build(place, MODES[mode])
    try:
        steps = play(where)
        if "prod" in where.databases:  # other source rows (jsonb's text): other hashes
            steps, reference = without_hashes(steps), without_hashes(reference)
        for got, want in zip(steps, reference, strict=True):
            assert got.label == want.label
            assert got.code == want.code, (got.label, got.output)
            assert got.output == want.output, got.label
            assert got.target == want.target, got.label
            assert got.files == want.files, got.label
            assert got.journaled == want.journaled, got.label
        if "dev" in where.databases:  # folders: bigint GENERATED BY DEFAULT AS IDENTITY
            dev = where.databases["dev"]
            top = pg_world.execute(dev, "SELECT max(id) FROM folders")[0][0]
            assert top == 3  # the copied folders kept their ids
            assert pg_world.execute(dev, "INSERT INTO folders (name) VALUES ('made by the app') "
                                         "RETURNING id") == [(top + 1,)]
    finally:
        where.drop()
        shutil.rmtree(place, ignore_errors=True)
