"""What the daemon costs, measured against references taken in the same run.

    python scripts/bench_daemon.py [--videos 2000] [--runs 20000] [--dir DIR]

1. One job run (`syncd jobs run`, incremental, files copied) against `syncd transfer` of the
   same selection on an identical world: the daemon's way adds nothing to a run.
2. The daemon's per-second look at the journal (latest run of a job, queued runs) and a
   `/metrics` scrape, on a journal holding --runs runs of the job, against `syncd runs`
   listing them all (journal.runs()).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import world as world_module  # noqa: E402

from journal import ApplyStarted, PlanSealed, RunFinished, RunStarted, SqliteJournal  # noqa: E402
from syncd.config import JobConfig  # noqa: E402
from syncd.daemon.jobs import Job  # noqa: E402
from syncd.daemon.metrics import JournalCollector, exposition, registry_for  # noqa: E402
from syncd.daemon.schedule import schedule_of, utcnow  # noqa: E402
from syncd.daemon.status import latest_run, queued_runs  # noqa: E402

SYNCD = Path(sys.executable).parent / "syncd"
JOB = """
[jobs.staging]
kind = "transfer"
source = "prod"
target = "dev"
entity = "videos"
copy_files = true
every = "15m"
incremental = "created_at"
"""


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def syncd(world: world_module.World, *args: str) -> None:
    subprocess.run([str(SYNCD), "--config", str(world.config), *args], check=True,
                   capture_output=True)


def one_run(base: Path, videos: int) -> None:
    plain = world_module.build_world(base / "plain", videos=videos)
    job = world_module.build_world(base / "job", videos=videos)
    job.config.write_text(job.config.read_text() + JOB)
    transfer = timed(lambda: syncd(plain, "transfer", "-s", "prod", "-t", "dev", "--entity", "videos",
                                   "--copy-files", "--yes"))
    run = timed(lambda: syncd(job, "jobs", "run", "staging"))
    rows = sum(plain.counts.values())
    print(f"one run, {videos} videos ({rows} prod rows, files copied):")
    print(f"  syncd transfer      {transfer:7.2f} s   1.00")
    print(f"  syncd jobs run      {run:7.2f} s   {run / transfer:.2f}")


def fill_journal(journal: SqliteJournal, runs: int) -> None:
    at = "2026-01-01T00:00:00.000000Z"
    batch = []
    for n in range(runs):
        run = f"run-{n:08d}"
        batch += [RunStarted(run=run, at=at, kind="transfer", source="prod", target="dev",
                             options={"job": "staging" if n % 2 else "other"}),
                  PlanSealed(run=run, at=at, entries=0), ApplyStarted(run=run, at=at, attempt=1),
                  RunFinished(run=run, at=at, status="completed")]
        if len(batch) >= 4000:
            journal.append(batch)
            batch = []
    journal.append(batch)


def loop_cost(base: Path, runs: int) -> None:
    base.mkdir(parents=True, exist_ok=True)
    journal = SqliteJournal(base / "journal.db")
    fill_journal(journal, runs)
    config = JobConfig(kind="transfer", source="prod", target="dev", every="15m")
    jobs = [Job(name, config, schedule_of(name, config)) for name in ("staging", "other")]
    registry = registry_for(JournalCollector(journal, jobs, utcnow(), set))
    listing = timed(journal.runs, repeat=5)

    def look() -> None:
        for job in jobs:
            latest_run(journal, job.name)
        queued_runs(journal, ("planned",))

    per_second = timed(look, repeat=20)
    cold = timed(lambda: exposition(registry))
    warm = timed(lambda: exposition(registry), repeat=5)
    print(f"journal with {runs} runs of two jobs:")
    print(f"  syncd runs (journal.runs())          {listing * 1000:8.1f} ms   1.00")
    print(f"  the daemon's look each second        {per_second * 1000:8.1f} ms   {per_second / listing:.3f}")
    print(f"  /metrics, first scrape               {cold * 1000:8.1f} ms   {cold / listing:.2f}")
    print(f"  /metrics, later scrapes              {warm * 1000:8.1f} ms   {warm / listing:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--dir", type=Path, help="where to build (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        base = args.dir or Path(tmp)
        one_run(base / "run", args.videos)
        loop_cost(base / "loop", args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
