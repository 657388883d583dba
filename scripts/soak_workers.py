"""Issue 15 soak: the failure figures of scale-out, over many trials (longer than the suite's).

    python scripts/soak_workers.py [--trials 30] [--kills 3]

Each trial is tests/test_workers.py's, on a larger world: a Postgres → Postgres transfer planned with --workers,
applied by three `syncd worker` processes, one of which is SIGKILLed `--kills` times, at random
instants while it holds an entry (a new worker takes its place each time), then compared with a clean run (rows,
entries, outcomes), with an AFTER INSERT trigger counting every row the target really inserted
and `journal verify`. For each kill it records the entries the victim held a lease on, and how
long after the kill another worker recorded their outcome (the takeover). Prints the figures;
exits 1 if any trial differs from the clean run.
"""
from __future__ import annotations

import argparse
import random
import shlex
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
import journal  # noqa: E402,F401  (first: tests/journal, a folder, must not stand in for the package)

sys.path.append(str(HERE.parent / "tests"))
import pg_world  # noqa: E402
import test_workers as tw  # noqa: E402  (the trial, its checks and its clean reference)
import world as world_module  # noqa: E402

SCHEMA = "syncd_journal"
VIDEOS = 150  # more than the suite's 40: the run lasts long enough for several kills


def held(trial: tw.Trial, pid: int) -> list[int]:
    try:
        rows = pg_world.execute(trial.journal, f"SELECT entry FROM {SCHEMA}.leases WHERE owner = %s",
                                f"{socket.gethostname()}:{pid}")
    except psycopg.errors.UndefinedTable:  # nobody has opened the journal yet
        return []
    return [r[0] for r in rows]


def busy_worker(trial: tw.Trial, workers: list[Any], rng: random.Random) -> tuple[Any, list[int]]:
    """A worker holding an entry (waiting up to 3 s for one to), else any worker."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for worker in rng.sample(workers, len(workers)):
            in_hand = held(trial, worker.pid)
            if in_hand:
                return worker, in_hand
        time.sleep(0.002)
    return rng.choice(workers), []


def recorded(trial: tw.Trial, entries: list[int]) -> bool:
    rows = pg_world.execute(trial.journal, f"SELECT count(*) FROM {SCHEMA}.entries WHERE entry = ANY(%s)"
                            " AND state <> 'pending'", entries)
    return bool(rows[0][0] == len(entries))


def one_trial(ref: tw.Reference, root: Path, rng: random.Random, kills: int) -> list[float]:
    trial = tw.fresh(ref, root)
    workers = [trial.start_worker() for _ in range(3)]
    takeovers: list[float] = []
    try:
        transfer = trial.start_transfer()
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 1.2))
            victim, in_hand = busy_worker(trial, workers, rng)
            workers.remove(victim)
            victim.kill()
            killed_at = time.monotonic()
            victim.wait()
            workers.append(trial.start_worker())
            while in_hand and transfer.poll() is None and not recorded(trial, in_hand):
                time.sleep(0.01)
            if in_hand:
                takeovers.append(time.monotonic() - killed_at)
        tw.check(ref, trial, tw.finish(transfer))
        return takeovers
    finally:
        tw.stop_all(workers)
        tw.drop(trial)


def reference(root: Path) -> tw.Reference:
    base = world_module.build_world(root / "base", videos=VIDEOS, files=False)
    prod = pg_world.load_world(base, "prod", extra=False)
    template = pg_world.load_world(base, "dev", extra=False)
    pg_world.execute(template, tw.COUNT_INSERTS)
    ref = tw.Reference(base, prod, template, {}, [])
    trial = tw.fresh(ref, root / "clean")
    try:
        worker = trial.start_worker()
        transfer = tw.finish(trial.start_transfer())
        tw.stop_all([worker])
        ref.snapshot = pg_world.snapshot(trial.dev)
        ref.entries = tw.entries_of(trial.w, transfer.json()["run_id"])
    finally:
        tw.drop(trial)
    return ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print("reproduce: " + shlex.join([sys.executable, "scripts/soak_workers.py", "--trials", str(args.trials),
                                      "--kills", str(args.kills), "--seed", str(args.seed)]), flush=True)
    rng, takeovers, failed = random.Random(args.seed), [], 0
    with tempfile.TemporaryDirectory(prefix="syncd-soak-workers-") as tmp:
        ref = reference(Path(tmp))
        try:
            for n in range(args.trials):
                try:
                    takeovers += one_trial(ref, Path(tmp) / f"t{n}", rng, args.kills)
                    print(f"trial {n + 1}: equal to the clean run", flush=True)
                except AssertionError as exc:
                    failed += 1
                    print(f"trial {n + 1}: DIFFERS: {str(exc)[:300]}", flush=True)
        finally:
            pg_world.drop_database(ref.prod)
            pg_world.drop_database(ref.dev_template)
    kills = args.trials * args.kills
    print(f"\n{args.trials} trials, {kills} SIGKILLs, {len(takeovers)} with entries in hand; "
          f"{failed} trials differing from the clean run (rows, entries, one outcome per entry, "
          "no row inserted twice, journal verify)")
    if takeovers:
        print(f"takeover after a kill (until the killed worker's entries had an outcome): "
              f"median {statistics.median(takeovers):.2f} s, max {max(takeovers):.2f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
