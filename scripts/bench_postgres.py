"""Issue 11 benchmark: syncd transfer Postgres → Postgres against references measured in the
same run.

    python scripts/bench_postgres.py [--rows 100000] [--rss-rows 100000] [--steps 4]

Builds a records-only world (scripts/world.py, files=False; 8 rows per video with 4 steps) of
about --rows rows, loads it into a source database with Postgres types (tests/pg_world.py:
uuid, timestamptz, jsonb, an enum) and times, each into a fresh empty target database with
the same tables: (a) `COPY (SELECT …) TO STDOUT` piped into `COPY … FROM STDIN` (binary)
between the two databases, table by table in dependency order, the limit of any tool that
moves rows through a client; (b) a plain psycopg loop, fetchmany(1000) and executemany
INSERT, one transaction per table; and (c) the real `syncd transfer -s prod -t dev --yes
--json` as a child process, whose peak RSS is that of its processes together (scripts/procs.py). With --rss-rows N (not 0)
syncd also runs on an N-row world, to compare peak RSS between the two sizes: streaming
means about equal. Needs the local server (127.0.0.1:5432, user postgres). Not a test: it
prints numbers and ratios and asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import JsonbDumper

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import pg_world  # noqa: E402  (tests/pg_world.py)
from bench_transfer import MIB, BenchFailed, Result, syncd_command  # noqa: E402
from procs import run_measured  # noqa: E402
from world import World, build_world  # noqa: E402

ORDER = ["devices", "locations", "vendors", "collectors", "videos", "annotation_runs",
         "segmentations", "video_steps"]
ROWS_PER_VIDEO = 4  # + steps: a video, its annotation run and its two segmentations


def make_world(root: Path, rows: int, steps: int) -> tuple[World, str]:
    """A records-only SQLite world of about `rows` rows and its copy in a source database."""
    videos = max(1, rows // (ROWS_PER_VIDEO + steps))
    started = time.perf_counter()
    world = build_world(root, videos=videos, steps_per_video=steps, files=False)
    prod = pg_world.load_world(world, "prod", extra=False)
    print(f"world: {videos:,} videos × {steps} steps → {sum(world.counts.values()):,} rows, "
          f"in Postgres database {prod} ({time.perf_counter() - started:.1f}s)", flush=True)
    return world, prod


def empty_target(label: str) -> str:
    db = pg_world.create_database(label)
    pg_world.execute(db, pg_world.WORLD_SCHEMA)
    return db


def bench_copy_pipe(prod: str) -> Result:
    target = empty_target("copy")
    try:
        rows = 0
        with pg_world.connect(prod) as src, pg_world.connect(target, autocommit=False) as dst:
            started = time.perf_counter()
            for table in ORDER:
                name = sql.Identifier(table)
                with src.cursor().copy(sql.SQL("COPY (SELECT * FROM {}) TO STDOUT (FORMAT binary)")
                                       .format(name)) as out, \
                        dst.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT binary)")
                                          .format(name)) as into:
                    for block in out:
                        into.write(block)
                rows += dst.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0]
            dst.commit()
            return Result("COPY TO STDOUT | COPY FROM", rows, time.perf_counter() - started)
    finally:
        pg_world.drop_database(target)


def bench_psycopg_loop(prod: str) -> Result:
    target = empty_target("loop")
    try:
        rows = 0
        with pg_world.connect(prod) as src, pg_world.connect(target, autocommit=False) as dst:
            dst.adapters.register_dumper(dict, JsonbDumper)  # jsonb values load as dicts
            started = time.perf_counter()
            for table in ORDER:
                with src.transaction(), src.cursor(name=f"read_{table}") as cur:
                    cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
                    assert cur.description is not None
                    marks = sql.SQL(", ").join([sql.Placeholder()] * len(cur.description))
                    insert = sql.SQL("INSERT INTO {} VALUES ({})").format(
                        sql.Identifier(table), marks)
                    with dst.cursor() as out:
                        while batch := cur.fetchmany(1000):
                            out.executemany(insert, batch)
                            rows += len(batch)
                dst.commit()
            return Result("psycopg fetchmany/executemany", rows, time.perf_counter() - started)
    finally:
        pg_world.drop_database(target)


def bench_syncd(world: World) -> Result:
    code, out, err, seconds, rss = run_measured(syncd_command(world), world.root)
    if code != 0:
        raise BenchFailed(f"syncd exited with {code}:\n" + "\n".join(err.splitlines()[-15:]))
    report = json.loads(out)
    if report.get("status") != "completed":
        raise BenchFailed(f"syncd run {report.get('run_id')} ended {report.get('status')!r}")
    created = sum(e["created"] for e in report["applied"]["entities"].values())
    return Result("syncd transfer", created, seconds, rss)


def bench_syncd_pg(world: World, prod: str, label: str) -> Result:
    target = empty_target("syncd")
    try:
        pg_world.point_config(world, "prod", prod)
        pg_world.point_config(world, "dev", target)
        print("running: " + shlex.join(syncd_command(world)), flush=True)
        result = bench_syncd(world)
        result.method = label
        return result
    finally:
        pg_world.drop_database(target)


def print_table(results: list[Result], others: list[Result]) -> None:
    pipe, loop = results[0].rate, results[1].rate
    print(f"\n{'method':<32} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'vs COPY':>8}"
          f" {'vs loop':>8} {'peak RSS':>9}")
    for r in results + others:
        rss = f"{r.peak_rss / MIB:.0f} MiB" if r.peak_rss is not None else "-"
        print(f"{r.method:<32} {r.rows:>10,} {r.seconds:>8.2f} {r.rate:>10,.0f}"
              f" {r.rate / pipe:>8.3f} {r.rate / loop:>8.3f} {rss:>9}")
    if others and others[0].peak_rss and results[-1].peak_rss:
        print(f"peak RSS {results[-1].rows:,} rows / {others[0].rows:,} rows = "
              f"{results[-1].peak_rss / others[0].peak_rss:.2f}")


def run(root: Path, rows: int, rss_rows: int, steps: int) -> None:
    databases = []
    try:
        world, prod = make_world(root / "main", rows, steps)
        databases.append(prod)
        results = [bench_copy_pipe(prod), bench_psycopg_loop(prod),
                   bench_syncd_pg(world, prod, "syncd transfer")]
        others = []
        if rss_rows:
            small, small_prod = make_world(root / "small", rss_rows, steps)
            databases.append(small_prod)
            others.append(bench_syncd_pg(small, small_prod, f"syncd transfer, {rss_rows:,} rows"))
        print_table(results, others)
    finally:
        for db in databases:
            pg_world.drop_database(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="about this many rows")
    parser.add_argument("--rss-rows", type=int, default=0,
                        help="also run syncd on a world of this many rows, for peak RSS")
    parser.add_argument("--steps", type=int, default=4, help="steps per video")
    args = parser.parse_args(argv)
    print("reproduce: " + shlex.join([sys.executable, "scripts/bench_postgres.py", "--rows",
                                      str(args.rows), "--rss-rows", str(args.rss_rows)]),
          flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-pg-") as tmp:
            run(Path(tmp), args.rows, args.rss_rows, args.steps)
    except (BenchFailed, psycopg.Error) as exc:
        print(f"bench FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
