"""How long the read-only commands take end to end, interpreter start included (issue 10.16).

    python scripts/bench_startup.py [--records 200000] [--repeat 7] [--importtime] [--dir DIR]

1. `syncd --help`, `runs`, `show RUN`, `audit KEY` and `log --run RUN` on a small journal (one
   real transfer of a 20-video world), each the median of --repeat runs of the real console
   script.
2. `audit KEY` right after a large run: a journal holding one completed run of --records
   synthetic records (EntryPlanned events of 20,000 keys appended straight to a SqliteJournal,
   as scripts/bench_daemon.py fills one). First with the record index still behind, as every
   run left it before issue 10 (the audit catches it up); then after `catch_up_index()`, which
   `operations.apply` now calls when a run's apply ends; and that catch-up's own time.
3. With --importtime, `python -X importtime` of each small-journal command: the import time
   per top-level package (self times summed), largest first.

Timings are wall times of whole processes; run it when no test suite is running (the load
average is printed first).
"""
from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import world as world_module  # noqa: E402

from journal import (ApplyStarted, EntryApplied, EntryPlanned, PlanSealed, RunFinished,  # noqa: E402
                     RunStarted, SqliteJournal)
from syncd.payload import pack_rows, row_hash  # noqa: E402

SYNCD = Path(sys.executable).parent / "syncd"
BATCH = 20_000  # records per entry, as the planner emits them
RUN = "20260101-000000-beef"
AT = "2026-01-01T00:00:00.000000Z"


def compiled() -> None:
    """Byte-compile syncd as an installed package would be, whatever PYTHONDONTWRITEBYTECODE
    says (set on some machines, it would have every run compile syncd's sources again: ~40 ms)."""
    for package in ("syncd", "journal"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def wall(args: list[str], repeat: int, *, warm: bool = True) -> float:
    """Median seconds of `repeat` runs of a command that must succeed (after one warm-up
    run, unless the first run is what is measured)."""
    times = []
    if warm:
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return median(times)


def small_journal(base: Path) -> tuple[Path, str, str]:
    """A world after one real transfer: its config, the run id and a key the run created."""
    world = world_module.build_world(base / "small", videos=20)
    subprocess.run([str(SYNCD), "--config", str(world.config), "transfer", "-s", "prod", "-t", "dev",
                    "--entity", "videos", "--copy-files", "--yes"], check=True, capture_output=True)
    run_id = SqliteJournal(world.root / "journal.db").runs()[0].run
    assert world.video_ids is not None
    return world.config, run_id, world.video_ids[0]


def large_run(journal: SqliteJournal, records: int) -> None:
    """One completed run of `records` synthetic records, in entries of BATCH."""
    journal.append([RunStarted(run=RUN, at=AT, kind="copy", source="prod", target="dev")])
    entries = 0
    for entries, start in enumerate(range(0, records, BATCH), 1):
        rows = [[f"key-{n:09d}", f"title {n}"] for n in range(start, min(start + BATCH, records))]
        journal.append([EntryPlanned(run=RUN, at=AT, entry=entries, entity="items", op="create",
                                     columns=["id", "title"], keys=[str(r[0]) for r in rows],
                                     hashes=[row_hash(r) for r in rows], payload=pack_rows(rows))])
    journal.append([PlanSealed(run=RUN, at=AT, entries=entries), ApplyStarted(run=RUN, at=AT, attempt=1)])
    for entry in range(1, entries + 1):
        n = min(BATCH, records - (entry - 1) * BATCH)
        journal.append([EntryApplied(run=RUN, at=AT, entry=entry, state="done", outcomes=["created"] * n)],
                       durable=False)
    journal.append([RunFinished(run=RUN, at=AT, status="completed")])


def large_journal(base: Path, records: int) -> Path:
    """A config whose journal holds the large run, its record index not caught up."""
    folder = base / "large"
    folder.mkdir(parents=True)
    with SqliteJournal(folder / "journal.db") as journal:
        large_run(journal, records)
    config = folder / "syncd.toml"
    config.write_text('[journal]\nurl = "sqlite:///journal.db"\n')
    return config


def audits_after_a_large_run(config: Path, records: int, repeat: int) -> None:
    db = config.parent / "journal.db"
    behind = db.with_name("behind.db")
    shutil.copyfile(db, behind)
    audit = [str(SYNCD), "--config", str(config), "audit", f"key-{records // 2:09d}"]
    cold = []
    for _ in range(repeat):  # each on a fresh copy: the first audit catches the index up
        shutil.copyfile(behind, db)
        cold.append(wall(audit, 1, warm=False))
    shutil.copyfile(behind, db)
    start = time.perf_counter()
    with SqliteJournal(db) as journal:
        journal.catch_up_index()  # what the apply now does as it ends
    catch_up = time.perf_counter() - start
    print(f"audit right after a run of {records:,} records (median of {repeat}):")
    print(f"  index behind (before issue 10)   {median(cold) * 1000:8.0f} ms")
    print(f"  index caught up by the apply     {wall(audit, repeat) * 1000:8.0f} ms")
    print(f"  the catch-up, at the apply's end {catch_up * 1000:8.0f} ms (once)")


def commands(config: Path, run_id: str, key: str) -> dict[str, list[str]]:
    at = ["--config", str(config)]
    return {"--help": ["--help"], "runs": [*at, "runs"], "show": [*at, "show", run_id],
            "audit": [*at, "audit", key], "log": [*at, "log", "--run", run_id]}


def import_times(args: list[str], top: int) -> str:
    """Import time per top-level package, largest first (self times, so nothing counts twice)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "syncd", *args],
                          capture_output=True, text=True, check=True)
    per_package: Counter[str] = Counter()
    for self_us, name in re.findall(r"^import time:\s+(\d+) \|\s+\d+ \| +(\S+)", proc.stderr, re.M):
        per_package[name.split(".")[0]] += int(self_us)
    total = sum(per_package.values())
    parts = ", ".join(f"{name} {us / 1000:.0f}" for name, us in per_package.most_common(top))
    return f"{total / 1000:.0f} ms: {parts}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="records of the large run")
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (the median is shown)")
    parser.add_argument("--importtime", action="store_true", help="also show import times per package")
    parser.add_argument("--top", type=int, default=8, help="packages shown with --importtime")
    parser.add_argument("--dir", type=Path, help="where to build (default: a temporary folder)")
    args = parser.parse_args()
    compiled()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"a bare `python -c pass`: {wall([sys.executable, '-c', 'pass'], args.repeat) * 1000:.0f} ms")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = args.dir or Path(tmp)
        small = commands(*small_journal(base))
        small |= {f"{name} --json": [*cmd, "--json"] for name, cmd in small.items() if name != "--help"}
        print(f"small journal (one transfer of 20 videos), median of {args.repeat}:")
        for name, cmd in small.items():
            print(f"  syncd {name:<13} {wall([str(SYNCD), *cmd], args.repeat) * 1000:8.0f} ms")
        if args.importtime:
            print("imports (python -X importtime -m syncd …), ms per package:")
            for name, cmd in small.items():
                print(f"  {name:<8} {import_times(cmd, args.top)}")
        audits_after_a_large_run(large_journal(base, args.records), args.records, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
