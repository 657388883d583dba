"""Issue 15 benchmark: one Postgres → Postgres transfer applied by 1, 2 and 4 `syncd worker`
processes sharing a Postgres journal, against the same transfer applied in-process, all
measured in this run.

    python scripts/bench_workers.py [--rows 200000] [--workers 1,2,4]

Builds a records-only world of about --rows rows in a source database (as
scripts/bench_postgres.py does), then for each method times `syncd transfer -s prod -t dev
--yes --json` into a fresh empty target database, with a fresh Postgres journal database:
- in-process: the transfer plans and applies itself (its applier process overlaps the two),
  with the Postgres journal and, for reference, with the default SQLite one;
- N workers: `--workers`, N `syncd worker` processes started beforehand; the time is the
  transfer's, from its start until the workers have ended the run.
- planning only: `--workers --plan-only` with no worker, the planning's own time: no number
  of workers can end the run sooner, since they apply what it has sealed;
- N workers, apply only: the run planned first (untimed), then N workers started and timed
  until they have ended it (`syncd resume RUN` waits for them): how applying alone scales.
The rows/s of each and its ratio to one worker and to in-process are printed. On a 2-core
machine the planner, the workers and the database server share two cores: the gain from
more workers is bounded by that, not by the journal (each entry's outcome is one short
append under the journal's lock). Not a test: it prints numbers and asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import pg_world  # noqa: E402  (tests/pg_world.py)
from bench_postgres import empty_target, make_world  # noqa: E402
from bench_transfer import SYNCD, BenchFailed, Result  # noqa: E402
from world import World  # noqa: E402

TRANSFER = ["transfer", "-s", "prod", "-t", "dev", "--yes", "--json"]


def point(world: World, original: str, prod: str, dev: str, journal: str | None) -> None:
    """The world's config, as built, pointed at these databases (journal None: its SQLite one)."""
    world.config.write_text(original)
    pg_world.point_config(world, "prod", prod)
    pg_world.point_config(world, "dev", dev)
    if journal is None:
        return
    text = world.config.read_text()
    head, sep, rest = text.partition("[environments")
    head = "\n".join(f'url = "{pg_world.url(journal)}"' if line.startswith("url = ") else line
                     for line in head.splitlines()) + "\n"
    world.config.write_text(head + sep + rest)


def syncd(world: World, *args: str) -> list[str]:
    return [str(SYNCD), "--config", str(world.config), *args]


def _workers(world: World, n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(syncd(world, "worker"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(n)]


def _run(command: list[str], world: World) -> tuple[str, str]:
    done = subprocess.run(command, capture_output=True, text=True, cwd=world.root)
    if done.returncode != 0:
        raise BenchFailed(f"syncd exited with {done.returncode}:\n" + done.stderr[-2000:])
    return done.stdout, done.stderr


def bench(world: World, original: str, prod: str, workers: int, plan_only: bool = False,
          apply_only: bool = False, sqlite_journal: bool = False) -> Result:
    """One transfer into a fresh target and journal; `workers` 0: applied in-process, or with
    `plan_only` planned for workers that are not there (the planning's own time: the floor)."""
    dev, journal = empty_target("workers"), pg_world.create_database("journal")
    started_workers: list[subprocess.Popen[bytes]] = []
    try:
        (world.root / "journal.db").unlink(missing_ok=True)
        point(world, original, prod, dev, None if sqlite_journal else journal)
        if apply_only:  # planned first, untimed; then the workers start and are timed
            planned = json.loads(_run(syncd(world, *TRANSFER, "--workers", "--plan-only"), world)[0])
            started = time.perf_counter()
            started_workers = _workers(world, workers)
            out, _ = _run(syncd(world, "resume", planned["run_id"], "--yes", "--json"), world)
        else:
            started_workers = _workers(world, workers)
            time.sleep(1.0 if workers else 0)  # started and polling, as in production
            command = syncd(world, *TRANSFER, *(["--workers"] if workers or plan_only else []),
                            *(["--plan-only"] if plan_only else []))
            started = time.perf_counter()
            out, _ = _run(command, world)
        seconds = time.perf_counter() - started
        report = json.loads(out)
        created = sum(e["created"] for e in report["applied"]["entities"].values())
        if plan_only:
            created = sum(e["create"] for e in report["plan"]["entities"].values())
        label = ("planning only" if plan_only else
                 f"{workers} worker{'s' if workers > 1 else ''}" if workers else "in-process")
        label += ", apply only" if apply_only else ", SQLite journal" if sqlite_journal else ""
        return Result(label, created, seconds)
    finally:
        for process in started_workers:
            process.send_signal(signal.SIGTERM)
        for process in started_workers:
            process.wait(60)
        pg_world.drop_database(dev)
        pg_world.drop_database(journal)


def print_table(results: list[Result]) -> None:
    inproc = next(r.rate for r in results if r.method == "in-process")
    one = next((r.rate for r in results if r.method == "1 worker"), inproc)
    print(f"\n{'method':<24} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'vs 1 worker':>12} {'vs in-process':>14}")
    for r in results:
        print(f"{r.method:<24} {r.rows:>10,} {r.seconds:>8.2f} {r.rate:>10,.0f} {r.rate / one:>12.2f}"
              f" {r.rate / inproc:>14.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="about this many rows")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--steps", type=int, default=4, help="steps per video")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    print("reproduce: " + shlex.join([sys.executable, "scripts/bench_workers.py", "--rows", str(args.rows),
                                      "--workers", args.workers]), flush=True)
    print(f"cores: {os.cpu_count()}", flush=True)
    prod = None
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-workers-") as tmp:
            world, prod = make_world(Path(tmp) / "w", args.rows, args.steps)
            results, original = [], world.config.read_text()
            results.append(bench(world, original, prod, 0, sqlite_journal=True))
            for workers in [0, *counts]:
                results.append(bench(world, original, prod, workers))
                print(f"{results[-1].method}: {results[-1].rate:,.0f} rows/s", flush=True)
            results.append(bench(world, original, prod, 0, plan_only=True))
            for workers in counts:
                results.append(bench(world, original, prod, workers, apply_only=True))
                print(f"{results[-1].method}: {results[-1].rate:,.0f} rows/s", flush=True)
            print_table(results)
    except (BenchFailed, psycopg.Error) as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if prod is not None:
            pg_world.drop_database(prod)
    return 0


if __name__ == "__main__":
    sys.exit(main())
