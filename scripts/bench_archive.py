"""Issue 12 benchmark: `syncd export --all` and `syncd import` against `sqlite3 .dump` / `.read`,
measured in the same run, and peak RSS at two sizes.

    python scripts/bench_archive.py [--videos 125000] [--small 12500]

Builds a grace-like world (scripts/world.py, records only: about 8 rows per video, so 125000
videos are about 1M rows), then for each size:

(a) `sqlite3 prod.db .dump > dump.sql` and `sqlite3 new.db < dump.sql` (the SQLite shell: a
    text dump and its replay, what a person would reach for first);
(b) `syncd export -s prod -o all.zip --all --yes`, a real process (plan, journal every row
    with its hash, stage, zip, read back and verify), then `syncd import all.zip -t empty
    --yes` (load the zip into a scratch SQLite file, plan, journal, apply).

Prints rows, seconds, rows/s, syncd ÷ sqlite3 for each direction, peak RSS of each syncd
process (wait4), and checks that the imported tables equal prod's. Not a test: numbers only.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import archive_world as aw  # noqa: E402
import world as world_module  # noqa: E402

SYNCD = Path(sys.executable).parent / "syncd"
MIB = 1024 * 1024


def timed(args: list[str], **kw: object) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, **kw)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed")
    return elapsed, usage.ru_maxrss * 1024


def rows_in(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return sum(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in world_module.TABLES)
    finally:
        conn.close()


def measure(root: Path, videos: int) -> dict[str, float]:
    w = world_module.build_world(root, videos=videos, files=False)
    aw.add_empty_env(w, "empty")
    rows = rows_in(w.prod_db)
    dump = root / "dump.sql"
    with open(dump, "wb") as out:
        dump_s, _ = timed(["sqlite3", str(w.prod_db), ".dump"], stdout=out)
    with open(dump, "rb") as inp:
        read_s, _ = timed(["sqlite3", str(root / "replayed.db")], stdin=inp)
    config = ["--config", str(w.config)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    export_s, export_rss = timed([str(SYNCD), *config, "export", "-s", "prod", "-o", str(root / "all.zip"),
                                  "--all", "--yes", "--json"], **quiet)
    import_s, import_rss = timed([str(SYNCD), *config, "import", str(root / "all.zip"), "-t", "empty",
                                  "--yes", "--json"], **quiet)
    assert aw.tables(w.prod_db) == aw.tables(root / "empty.db"), "import differs from prod"
    return {"rows": rows, "dump_s": dump_s, "read_s": read_s, "export_s": export_s, "import_s": import_s,
            "export_rss": export_rss / MIB, "import_rss": import_rss / MIB,
            "zip_mib": (root / "all.zip").stat().st_size / MIB, "dump_mib": dump.stat().st_size / MIB}


def report(m: dict[str, float]) -> None:
    rows = m["rows"]
    print(f"\n{int(rows):,} rows (zip {m['zip_mib']:.0f} MiB, SQL dump {m['dump_mib']:.0f} MiB)")
    print(f"{'':34}{'seconds':>9}{'rows/s':>12}{'syncd ÷ sqlite3 (rows/s)':>27}")
    for label, key in (("sqlite3 .dump", "dump_s"), ("syncd export --all", "export_s"),
                       ("sqlite3 .read of the dump", "read_s"), ("syncd import", "import_s")):
        ratio = ""
        if key == "export_s":
            ratio = f"{m['dump_s'] / m['export_s']:.3f}"
        if key == "import_s":
            ratio = f"{m['read_s'] / m['import_s']:.3f}"
        print(f"{label:34}{m[key]:9.2f}{rows / m[key]:12,.0f}{ratio:>27}")
    print(f"peak RSS: export {m['export_rss']:.0f} MiB, import {m['import_rss']:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=125_000)
    parser.add_argument("--small", type=int, default=12_500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        for videos in (args.small, args.videos):
            report(measure(Path(tmp) / f"w{videos}", videos))


if __name__ == "__main__":
    main()
