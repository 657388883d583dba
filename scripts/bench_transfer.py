"""architecture §7 benchmark: syncd transfer SQLite → SQLite against references measured in the same run.

    python scripts/bench_transfer.py [--videos 20000] [--steps 4] [--runs 3] [--with-dlt] [--keep DIR]
    python scripts/bench_transfer.py --memory [--keep DIR]

Builds a records-only world (scripts/world.py; files=False), then times, on fresh copies of
its dev.db, each run `--runs` times (the median is printed): (1) `INSERT OR IGNORE … SELECT`
over ATTACH for every table in one transaction, the physical limit (SQLite copies whole pages
into empty tables); (1b) the same with `WHERE 1`, which forces a row-by-row insert, still all
in C; (2) a plain Python fetchmany/executemany loop with no journal; (3) with --with-dlt, dlt
1.31 (sqlalchemy source and destination) loading every table into an empty SQLite file, in a
virtualenv this script creates under the scratch folder (dlt is never a dependency of syncd);
and (4) the real `syncd transfer -s prod -t dev --yes --json` as a child process. Its peak
RSS is that of its processes together (the planner and its applier process), sampled from
/proc. It prints rows/s and syncd's ratio to each reference. `--memory` runs syncd on a 10k-
and a 100k-video world and prints both peak RSS figures: streaming means they should be
about equal.
Not a test: it prints numbers and ratios, it asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import run_measured  # noqa: E402
from world import World, build_world  # noqa: E402

SYNCD = Path(sys.executable).parent / "syncd"
SYNCD_ARGS = ["transfer", "-s", "prod", "-t", "dev", "--yes", "--json"]
MIB = 1024 * 1024


class BenchFailed(Exception):
    pass


@dataclass
class Result:
    method: str
    rows: int
    seconds: float
    peak_rss: int | None = None  # bytes

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


# -- references ---------------------------------------------------------------------------------

def dependency_order(db: sqlite3.Connection) -> list[str]:
    """Tables with SQL-referenced parents first (JSON references are not needed: FKs are off)."""
    tables = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        " ORDER BY name")]
    parents = {t: {r[2] for r in db.execute(f'PRAGMA foreign_key_list("{t}")')} - {t}
               for t in tables}
    order: list[str] = []
    while len(order) < len(tables):
        ready = [t for t in tables if t not in order and parents[t] <= set(order)]
        if not ready:
            raise BenchFailed(f"foreign-key cycle among {sorted(set(tables) - set(order))}")
        order.extend(ready)
    return order


@contextmanager
def fresh_target(world: World, scratch: Path, name: str) -> Iterator[sqlite3.Connection]:
    path = scratch / f"{name}.db"
    shutil.copyfile(world.dev_db, path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()
        path.unlink()


def bench_attach(world: World, scratch: Path, *, row_by_row: bool = False) -> Result:
    """The limit. Into an empty table, SQLite's transfer optimisation copies whole b-tree
    pages for `INSERT … SELECT *`; a `WHERE 1` turns that off, giving the limit of a
    row-by-row insert done entirely in C, which is what any tool that sees rows can aim at."""
    where = " WHERE 1" if row_by_row else ""
    with fresh_target(world, scratch, "attach") as db:
        started = time.perf_counter()
        db.execute("ATTACH DATABASE ? AS p", (str(world.prod_db),))
        before = db.total_changes
        db.execute("BEGIN")
        for table in dependency_order(db):
            # OR IGNORE: dev already holds some parents (same id or same natural key)
            db.execute(f'INSERT OR IGNORE INTO main."{table}" SELECT * FROM p."{table}"{where}')
        db.execute("COMMIT")
        method = "… WHERE 1 (row by row, in C)" if row_by_row else "INSERT…SELECT over ATTACH"
        return Result(method, db.total_changes - before, time.perf_counter() - started)


def bench_python_loop(world: World, scratch: Path) -> Result:
    source = sqlite3.connect(world.prod_db)
    with fresh_target(world, scratch, "loop") as db:
        started = time.perf_counter()
        before = db.total_changes
        for table in dependency_order(source):
            cursor = source.execute(f'SELECT * FROM "{table}"')
            marks = ",".join("?" * len(cursor.description))
            insert = f'INSERT OR IGNORE INTO "{table}" VALUES ({marks})'
            db.execute("BEGIN")
            while batch := cursor.fetchmany(1000):
                db.executemany(insert, batch)
            db.execute("COMMIT")
        rows = db.total_changes - before
    source.close()
    return Result("Python fetchmany/executemany", rows, time.perf_counter() - started)


# -- syncd --------------------------------------------------------------------------------------

def syncd_command(world: World) -> list[str]:
    return [str(SYNCD), "--config", str(world.config), *SYNCD_ARGS]


# -- dlt, in a virtualenv of its own ------------------------------------------------------------

DLT = "dlt[sqlalchemy]==1.31.0"
DLT_RUN = """
import json, sys, time
import dlt
from dlt.sources.sql_database import sql_database
prod, target, scratch = sys.argv[1:4]
pipeline = dlt.pipeline(pipeline_name="bench", pipelines_dir=scratch, dataset_name="main",
                        destination=dlt.destinations.sqlalchemy(credentials=f"sqlite:///{target}"))
started = time.perf_counter()
pipeline.run(sql_database(credentials=f"sqlite:///{prod}", backend="sqlalchemy"))
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def dlt_python(root: Path, venv: Path | None = None) -> Path:
    venv = venv or root / "dlt-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {DLT} into {venv} …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", DLT], capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchFailed(f"pip install {DLT} failed:\n{done.stderr[-2000:]}")
    return python


def bench_dlt(world: World, scratch: Path, python: Path) -> Result:
    """dlt loads every table of prod into an empty SQLite file (it creates the tables and its
    own _dlt_* ones); timed from before the pipeline runs (its imports excluded), rows counted
    in the file afterwards."""
    target, pipes = scratch / "dlt.db", scratch / "dlt-pipelines"
    target.unlink(missing_ok=True)
    shutil.rmtree(pipes, ignore_errors=True)
    script = scratch / "run_dlt.py"
    script.write_text(DLT_RUN)
    # One load worker: several writing one SQLite file at once fail now and then with
    # "database is locked" (seen at 1M rows), and one is what dlt's SQLite users run.
    done = subprocess.run([str(python), str(script), str(world.prod_db), str(target), str(pipes)],
                          capture_output=True, text=True, env={**os.environ, "LOAD__WORKERS": "1"})
    if done.returncode != 0:
        raise BenchFailed(f"dlt failed:\n{done.stderr[:3000]}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    db = sqlite3.connect(target)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE '_dlt%'")]
    rows = sum(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)
    db.close()
    return Result("dlt 1.31 (sqlalchemy)", rows, seconds)


def bench_syncd(world: World) -> Result:
    if not SYNCD.exists():
        raise BenchFailed(f"{SYNCD} not found: install syncd into this venv (pip install -e .)")
    code, out, err, seconds, rss = run_measured(syncd_command(world), world.root)
    if code != 0:
        tail = "\n".join(err.strip().splitlines()[-15:])
        raise BenchFailed(f"syncd exited with {code}:\n{tail}")
    try:
        report = json.loads(out)
        created = sum(e["created"] for e in report["applied"]["entities"].values())
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchFailed(f"syncd --json output does not match architecture §6 ({exc!r}): "
                          f"{out[:300]!r}") from exc
    if report.get("status") != "completed":
        raise BenchFailed(f"syncd run {report.get('run_id')} ended {report.get('status')!r}")
    return Result("syncd transfer", created, seconds, rss)


# -- reporting ----------------------------------------------------------------------------------

def median(results: list[Result]) -> Result:
    """The run of median time (its RSS with it), over results of one method."""
    ordered = sorted(results, key=lambda r: r.seconds)
    return ordered[len(ordered) // 2]


def print_table(results: list[Result], runs: int) -> None:
    syncd = results[-1]
    print(f"\nmedian of {runs} run(s) each")
    print(f"{'method':<30} {'rows':>9} {'seconds':>8} {'rows/s':>10} {'syncd ÷ it':>11}"
          f" {'peak RSS':>9}")
    for r in results:
        rss = f"{r.peak_rss / MIB:.0f} MiB" if r.peak_rss is not None else "-"
        ratio = f"{syncd.rate / r.rate:.3f}" if r.rate else "-"
        print(f"{r.method:<30} {r.rows:>9,} {r.seconds:>8.2f} {r.rate:>10,.0f} {ratio:>11}"
              f" {rss:>9}")
    if len({r.rows for r in results}) > 1:
        print("note: row counts differ between methods (syncd matches parents by natural key;"
              " the references only skip existing ids and unique conflicts; dlt loads every"
              " prod row into an empty file)")


def make_world(root: Path, videos: int, steps: int) -> World:
    started = time.perf_counter()
    world = build_world(root, videos=videos, steps_per_video=steps, files=False)
    seconds = time.perf_counter() - started
    rows = sum(world.counts.values())
    print(f"world: {videos:,} videos × {steps} steps → {rows:,} prod rows in {seconds:.1f}s"
          f" ({world.root})", flush=True)
    return world


def run_speed(root: Path, videos: int, steps: int, runs: int, with_dlt: bool,
              dlt_venv: Path | None) -> None:
    world = make_world(root, videos, steps)
    python = dlt_python(root, dlt_venv) if with_dlt else None
    measured: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-refs-", dir=root) as scratch:
        methods = [lambda: bench_attach(world, Path(scratch)),
                   lambda: bench_attach(world, Path(scratch), row_by_row=True),
                   lambda: bench_python_loop(world, Path(scratch)),
                   *([lambda: bench_dlt(world, Path(scratch), python)] if python else []),
                   lambda: bench_syncd_fresh(world, Path(scratch))]
        for i in range(runs):
            for method in methods:
                # The previous method's writes are flushed first, so no method pays for the
                # disk writing back another's (syncd, which fsyncs, would pay the most).
                os.sync()
                result = method()
                measured.setdefault(result.method, []).append(result)
                print(f"  run {i + 1}: {result.method:<30} {result.rate:>10,.0f} rows/s", flush=True)
    print_table([median(r) for r in measured.values()], runs)


def bench_syncd_fresh(world: World, scratch: Path) -> Result:
    """syncd on the world's dev.db and a new journal; dev.db is put back as it was after, so
    the next run (and the references, which copy it) start from the same state."""
    saved = scratch / "dev.saved.db"
    shutil.copyfile(world.dev_db, saved)
    for old in world.root.glob("journal.db*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    try:
        return bench_syncd(world)
    finally:
        shutil.copyfile(saved, world.dev_db)


def run_memory(root: Path, steps: int) -> None:
    results = []
    for videos in (10_000, 100_000):
        world = make_world(root / f"{videos // 1000}k", videos, steps)
        print("running: " + shlex.join(syncd_command(world)), flush=True)
        result = bench_syncd(world)
        result.method = f"syncd, {videos // 1000}k videos"
        results.append(result)
    print(f"\n{'world':<24} {'rows':>9} {'seconds':>8} {'rows/s':>10} {'peak RSS':>9}")
    for r in results:
        print(f"{r.method:<24} {r.rows:>9,} {r.seconds:>8.2f} {r.rate:>10,.0f}"
              f" {(r.peak_rss or 0) / MIB:>5.0f} MiB")
    small, large = (r.peak_rss or 1 for r in results)
    print(f"peak RSS 100k / 10k = {large / small:.2f} (near 1 when memory does not grow"
          f" with the selection; 10× the rows)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=4, help="steps per video")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build the world(s) in DIR (must be empty) and keep them")
    parser.add_argument("--memory", action="store_true",
                        help="peak RSS of syncd on a 10k- and a 100k-video world")
    parser.add_argument("--runs", type=int, default=3, help="runs of each method (the median is shown)")
    parser.add_argument("--with-dlt", action="store_true",
                        help=f"also time {DLT}, installed into a virtualenv under the scratch folder")
    parser.add_argument("--dlt-venv", type=Path, metavar="DIR",
                        help="the virtualenv for --with-dlt (created there if missing; kept)")
    args = parser.parse_args(argv)
    reproduce = [sys.executable, "scripts/bench_transfer.py"] + (
        ["--memory", "--steps", str(args.steps)] if args.memory
        else ["--videos", str(args.videos), "--steps", str(args.steps), "--runs", str(args.runs)]
        + (["--with-dlt"] if args.with_dlt else []))
    print("reproduce: " + shlex.join(reproduce) + " [--keep DIR]", flush=True)
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        print(f"error: --keep {args.keep} is not empty", file=sys.stderr)
        return 2
    try:
        with workdir(args.keep) as root:
            if args.memory:
                run_memory(root, args.steps)
            else:
                run_speed(root, args.videos, args.steps, args.runs, args.with_dlt, args.dlt_venv)
    except BenchFailed as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def workdir(keep: Path | None, prefix: str = "syncd-bench-") -> Iterator[Path]:
    """DIR when --keep DIR was given (kept afterwards), else a temporary folder."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        print(f"kept in {keep.resolve()}")
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    sys.exit(main())
