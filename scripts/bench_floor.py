"""The speed floor of any journal-first, two-pass design in Python, on this machine.

Not syncd: the least such a design must do, with no planner logic (no diff, closure,
transforms or outcomes). Pass 1 fetches each row into Python, hashes it and appends it to a
journal-side table (fsynced per 20k rows). Pass 2 applies each 20k-row entry as INSERT … SELECT
over ATTACH from that table. Printed as a share of a plain ATTACH copy measured in the same run.

    .venv/bin/python scripts/bench_floor.py [--videos 20000]
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import build_world  # noqa: E402

TABLES = ["collectors", "devices", "locations", "vendors", "videos", "annotation_runs",
          "segmentations", "video_steps"]
STARTUP = 0.2  # seconds: a Python process importing syncd's stack, measured separately
ENTRY = 20_000


def attach_copy(prod: Path, target: Path) -> float:
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("ATTACH ? AS p", (str(prod),))
    start = time.perf_counter()
    conn.execute("BEGIN")
    for table in TABLES:
        conn.execute(f"INSERT OR IGNORE INTO {table} SELECT * FROM p.{table}")
    conn.execute("COMMIT")
    return time.perf_counter() - start


def journal_rows(prod: Path, journal: Path) -> list[tuple[str, int, int, int]]:
    encode = msgspec.msgpack.Encoder().encode
    src = sqlite3.connect(f"file:{prod}?mode=ro", uri=True)
    j = sqlite3.connect(journal, isolation_level=None)
    j.execute("PRAGMA journal_mode=WAL")
    j.execute("PRAGMA synchronous=FULL")
    j.execute("CREATE TABLE rows(id INTEGER PRIMARY KEY, " + ", ".join(f"c{i}" for i in range(16)) + ")")
    spans, n = [], 0
    for table in TABLES:
        cursor = src.execute(f"SELECT * FROM {table} ORDER BY id")
        while batch := cursor.fetchmany(ENTRY):
            width = len(batch[0])
            [hashlib.blake2b(encode(r), digest_size=16).digest() for r in batch]
            cols = ", ".join(f"c{i}" for i in range(width))
            j.execute("BEGIN")
            j.executemany(f"INSERT INTO rows(id, {cols}) VALUES (?{', ?' * width})",
                          [(n + i + 1, *r) for i, r in enumerate(batch)])
            j.execute("COMMIT")
            spans.append((table, width, n + 1, n + len(batch)))
            n += len(batch)
    return spans


def apply_entries(journal: Path, target: Path, spans: list[tuple[str, int, int, int]]) -> None:
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("ATTACH ? AS j", (str(journal),))
    for table, width, low, high in spans:
        cols = ", ".join(f"c{i}" for i in range(width))
        conn.execute("BEGIN")
        conn.execute(f"INSERT OR IGNORE INTO {table} SELECT {cols} FROM j.rows WHERE id BETWEEN ? AND ?",
                     (low, high))
        conn.execute("COMMIT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp) / "w", videos=args.videos, files=False)
        shutil.copy(world.dev_db, Path(tmp) / "ref.db")
        reference = attach_copy(world.prod_db, Path(tmp) / "ref.db")
        start = time.perf_counter()
        spans = journal_rows(world.prod_db, Path(tmp) / "journal.db")
        middle = time.perf_counter()
        apply_entries(Path(tmp) / "journal.db", world.dev_db, spans)
        end = time.perf_counter()
        rows = spans[-1][3]
        total = end - start + STARTUP
        print(f"{rows:,} rows: ATTACH {reference:.2f}s; pass 1 {middle - start:.2f}s, pass 2 "
              f"{end - middle:.2f}s, + {STARTUP}s startup = {total:.2f}s → {rows / total:,.0f} rows/s "
              f"= {reference / total:.3f} of ATTACH (a floor: no planner logic)")


if __name__ == "__main__":
    main()
