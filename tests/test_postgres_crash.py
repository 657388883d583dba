"""Invariant 3.2 with a Postgres target: a real `syncd transfer` process Postgres → Postgres is
killed (SIGKILL) at the applier's failpoints, then resumed; the target must equal an
uninterrupted run's, and the journal must say what a clean run says: every record created
once, by this run (resume recognises rows the killed attempt wrote by their content hash,
which holds because the store reads rows in canonical form). SQLite → Postgres too, where a
jsonb column does not keep SQLite's JSON text: the target's JSON columns are hashed as
canonical JSON, so those rows are recognised as well."""
from __future__ import annotations

import shutil
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pg_world
import world as world_module
from conftest import run, run_process
from syncd import failpoints

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--yes", "--json")
VIDEOS = 20
# (point, nth hit): the effect in flight, landed or not, at the first, a middle and last entry
KILLS: list[tuple[str, int | str]] = [
    ("apply.before-entry", 2), ("store.before-commit", 1), ("store.before-commit", "last"),
    ("apply.after-effect", 1), ("apply.after-effect", 4), ("apply.after-effect", "last"),
    ("apply.after-outcome", 3), ("plan.after-append", 1),
]


@dataclass
class Reference:
    base: world_module.World
    prod: str | None  # the source database, never written; None: the SQLite prod.db
    dev_template: str  # the target as it starts, copied for every run
    counted: Counter[str]
    snapshot: dict[str, list[tuple[Any, ...]]]
    entries: list[tuple[Any, ...]]

    def nth(self, point: str, n: int | str) -> int:
        return self.counted[point] if n == "last" else int(n)


def fresh(ref: Reference, root: Path) -> tuple[world_module.World, str]:
    """A folder with its own config and journal, and a new target database from the template."""
    root.mkdir(parents=True)
    w = world_module.World.at(root)
    shutil.copy(ref.base.config, w.config)
    dev = pg_world.create_database("dev", template=ref.dev_template)
    if ref.prod is None:
        w.config.write_text(w.config.read_text().replace(
            'records = "sqlite:///prod.db"', f'records = "sqlite:///{ref.base.prod_db}"'))
    else:
        pg_world.point_config(w, "prod", ref.prod)
    pg_world.point_config(w, "dev", dev)
    return w, dev


def entries_of(w: world_module.World, run_id: str) -> list[tuple[Any, ...]]:
    show = run(w, "show", run_id, "--json").json()
    assert show["status"] == "completed"
    return [(e["entity"], e["op"], e["records"], e["state"], e["created"], e["skipped"],
             e["failed"]) for e in show["entries"]]


def clean_run(base: world_module.World, prod: str | None, template: str) -> Reference:
    ref = Reference(base, prod, template, Counter(), {}, [])
    w, dev = fresh(ref, base.root.parent / f"clean-{'pg' if prod else 'sqlite'}")
    try:
        lock = threading.Lock()

        def count(name: str) -> None:
            with lock:
                ref.counted[name] += 1
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(failpoints, "hit", count)
            result = run(w, *TRANSFER)
        assert result.code == 0, result.stderr
        ref.snapshot = pg_world.snapshot(dev)
        ref.entries = entries_of(w, result.json()["run_id"])
        writing = [e for e in ref.entries if e[1] == "create"]  # `match` entries write nothing
        assert len(writing) >= 6 and ref.counted["store.before-commit"] == len(writing)
        return ref
    finally:
        pg_world.drop_database(dev)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Reference]]:
    base = world_module.build_world(tmp_path_factory.mktemp("pg-crash") / "base", videos=VIDEOS,
                                    files=False)
    prod = pg_world.load_world(base, "prod", extra=False)
    template = pg_world.load_world(base, "dev", extra=False)
    try:
        yield {"pg": clean_run(base, prod, template), "sqlite": clean_run(base, None, template)}
    finally:
        pg_world.drop_database(prod)
        pg_world.drop_database(template)


@pytest.fixture
def reference(worlds: dict[str, Reference]) -> Reference:
    return worlds["pg"]


def kill_and_resume(tmp_path: Path, reference: Reference, point: str,
                    n: int | str) -> list[tuple[Any, ...]]:
    """Kill a transfer at the point, resume it, check the target; the entries it journaled."""
    w, dev = fresh(reference, tmp_path / "w")
    try:
        killed = run_process(w, *TRANSFER, env={"SYNCD_FAILPOINT": f"{point}:{reference.nth(point, n)}"})
        assert killed.code == -signal.SIGKILL, (killed.code, killed.stderr)
        runs = run(w, "runs", "--json").json()
        assert len(runs) == 1 and runs[0]["status"] != "completed"
        resumed = run_process(w, "resume", runs[0]["run_id"], "--yes", "--json")
        assert resumed.code == 0, resumed.stderr
        assert pg_world.snapshot(dev) == reference.snapshot
        assert run(w, "journal", "verify").code == 0
        return entries_of(w, runs[0]["run_id"])
    finally:
        pg_world.drop_database(dev)


@pytest.mark.parametrize(("point", "n"), KILLS, ids=[f"{p}:{n}" for p, n in KILLS])
def test_sigkill_with_a_postgres_target_then_resume_equals_a_clean_run(
        tmp_path: Path, reference: Reference, point: str, n: int | str) -> None:
    assert kill_and_resume(tmp_path, reference, point, n) == reference.entries


@pytest.mark.parametrize("entity", ["video_steps", "videos"])
def test_sigkill_sqlite_to_postgres_after_the_effect(
        tmp_path: Path, worlds: dict[str, Reference], entity: str) -> None:
    """The effect of the entry landed, its outcome was lost: resume finds the rows present
    and journals them created, as a clean run does. video_steps rows (uuid, text,
    timestamptz) read back exactly as SQLite holds them; videos rows hold jsonb, whose text
    Postgres reorders, and match because JSON columns are hashed as canonical JSON."""
    ref = worlds["sqlite"]
    nth = 1 + [e[0] for e in ref.entries].index(entity)
    assert kill_and_resume(tmp_path, ref, "apply.after-effect", nth) == ref.entries
