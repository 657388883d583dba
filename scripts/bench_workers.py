"""Issue 15 benchmark: one Postgres → Postgres transfer applied by 1, 2 and 4 `syncd worker`
processes sharing a Postgres journal, against the same transfer applied in-process, all
measured in this run.

    python scripts/bench_workers.py [--rows 200000] [--workers 1,2,4]

Builds a records-only world of about --rows rows in a source database (as
scripts/bench_postgres.py does), then for each method times `syncd transfer -s prod -t dev
--yes --json` into a fresh empty target database, with a fresh Postgres journal database:
- in-process: the transfer plans and applies itself (its applier process overlaps the two);
- N workers: `--workers`, N `syncd worker` processes started beforehand; the time is the
  transfer's, from its start until the workers have ended the run.
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


def point(world: World, prod: str, dev: str, journal: str) -> None:
    pg_world.point_config(world, "prod", prod)
    pg_world.point_config(world, "dev", dev)
    text = world.config.read_text()
    head, sep, rest = text.partition("[environments")
    head = "\n".join(f'url = "{pg_world.url(journal)}"' if line.startswith("url = ") else line
                     for line in head.splitlines()) + "\n"
    world.config.write_text(head + sep + rest)


def syncd(world: World, *args: str) -> list[str]:
    return [str(SYNCD), "--config", str(world.config), *args]


def bench(world: World, prod: str, workers: int) -> Result:
    """One transfer into a fresh target and journal; `workers` 0: applied in-process."""
    dev, journal = empty_target("workers"), pg_world.create_database("journal")
    started_workers: list[subprocess.Popen[bytes]] = []
    try:
        point(world, prod, dev, journal)
        started_workers = [subprocess.Popen(syncd(world, "worker"), stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL) for _ in range(workers)]
        time.sleep(1.0 if workers else 0)  # started and polling, as in production
        command = syncd(world, *TRANSFER, *(["--workers"] if workers else []))
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=world.root)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise BenchFailed(f"syncd exited with {done.returncode}:\n" + done.stderr[-2000:])
        report = json.loads(done.stdout)
        created = sum(e["created"] for e in report["applied"]["entities"].values())
        label = f"{workers} worker{'s' if workers > 1 else ''}" if workers else "in-process"
        return Result(label, created, seconds)
    finally:
        for process in started_workers:
            process.send_signal(signal.SIGTERM)
        for process in started_workers:
            process.wait(60)
        pg_world.drop_database(dev)
        pg_world.drop_database(journal)


def print_table(results: list[Result]) -> None:
    inproc = results[0].rate
    one = next((r.rate for r in results if r.method == "1 worker"), inproc)
    print(f"\n{'method':<14} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'vs 1 worker':>12} {'vs in-process':>14}")
    for r in results:
        print(f"{r.method:<14} {r.rows:>10,} {r.seconds:>8.2f} {r.rate:>10,.0f} {r.rate / one:>12.2f}"
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
            results = []
            for workers in [0, *counts]:
                results.append(bench(world, prod, workers))
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
