"""Issue 13 benchmark: `syncd move` against the same UPDATEs written by hand, in one run.

    python scripts/bench_move.py [--rows 1000000] [--deployments 20]

Builds an Antenna-like SQLite world (tests/antenna_world.py's schema): two projects, the
first with --deployments deployments whose source images and occurrences (half each) and
events add up to about --rows rows, the second with one deployment. Then, each on a fresh
copy of the world, moves every deployment of project 1 but the first to project 2:

(a) by hand: one transaction of `UPDATE … SET project_id = 2 WHERE deployment_id IN (…)` per
    table, the floor for any tool that moves rows in the database;
(b) `syncd move -e lab --entity deployments -f id:in:[…] --to projects:2 --yes --json`, a
    real process: plan (every moved record read and journaled with its before-image),
    then one transaction with the checks, peak RSS from wait4.

Prints rows moved, seconds, rows/s, syncd's time ÷ the hand-written time, and checks that both
copies end equal. Not a test: numbers only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import antenna_world as antenna  # noqa: E402

SYNCD = Path(sys.executable).parent / "syncd"
MIB = 1024 * 1024
TABLES = ("deployments", "events", "source_images", "occurrences")


def build(root: Path, rows: int, deployments: int) -> Path:
    root.mkdir(parents=True)
    (root / "syncd.toml").write_text(antenna.CONFIG)
    db = root / "prod.db"
    conn = sqlite3.connect(db)
    conn.executescript(antenna.SCHEMA)
    (root / "dev.db").write_bytes(b"")
    sqlite3.connect(root / "dev.db").executescript(antenna.SCHEMA)
    conn.executemany("INSERT INTO projects VALUES (?, ?)", [(1, "one"), (2, "two")])
    conn.executemany("INSERT INTO taxa VALUES (?, ?)", [(t, f"taxon {t}") for t in range(1, 51)])
    conn.execute("INSERT INTO devices VALUES (1, 'dev', 1)")
    conn.execute("INSERT INTO sites VALUES (1, 'site', NULL)")
    conn.executemany("INSERT INTO deployments VALUES (?, ?, ?, 1, 1, NULL)",
                     [(d, f"d{d}", 1 if d <= deployments else 2) for d in range(1, deployments + 2)])
    per_event, events = 20, max(1, rows // 41)  # 1 event, 20 images, 20 occurrences
    conn.executemany("INSERT INTO events VALUES (?, '2026-01-01', ?, ?)",
                     ((e, d, 1 if d <= deployments else 2) for e in range(1, events + 1)
                      for d in [1 + e % (deployments + 1)]))
    conn.executemany("INSERT INTO source_images VALUES (?, 'img', ?, ?, ?)",
                     ((e * per_event + i, 1 + e % (deployments + 1), e, 1 if 1 + e % (deployments + 1) <= deployments else 2)
                      for e in range(1, events + 1) for i in range(per_event)))
    conn.executemany("INSERT INTO occurrences VALUES (?, 0.5, ?, ?, ?, ?)",
                     ((e * per_event + i, 1 + e % (deployments + 1), e, 1 + i % 50,
                       1 if 1 + e % (deployments + 1) <= deployments else 2)
                      for e in range(1, events + 1) for i in range(per_event)))
    conn.commit()
    conn.close()
    return root


def moved_rows(db: Path, moved: list[int]) -> int:
    with sqlite3.connect(db) as conn:
        marks = ",".join(map(str, moved))
        total = conn.execute(f"SELECT COUNT(*) FROM deployments WHERE id IN ({marks})").fetchone()[0]
        for table in TABLES[1:]:
            total += conn.execute(f"SELECT COUNT(*) FROM {table} WHERE deployment_id IN ({marks})").fetchone()[0]
    return int(total)


def scopes(db: Path, table: str) -> list[tuple[object, ...]]:
    """(id, project_id): what both methods must agree on. syncd also clones the device that
    project 1's staying deployment shares with the moved ones (the hand-written UPDATEs do
    not), so the moved deployments' device_id differs by design."""
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT id, project_id FROM {table} ORDER BY id").fetchall()


def by_hand(db: Path, moved: list[int]) -> float:
    marks = ",".join(map(str, moved))
    started = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"UPDATE deployments SET project_id = 2 WHERE id IN ({marks})")
    for table in TABLES[1:]:
        conn.execute(f"UPDATE {table} SET project_id = 2 WHERE deployment_id IN ({marks})")
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def by_syncd(root: Path, moved: list[int]) -> tuple[float, int]:
    command = [str(SYNCD), "--config", str(root / "syncd.toml"), "move", "-e", "lab", "--entity",
               "deployments", "-f", f"id:in:[{','.join(map(str, moved))}]", "--to", "projects:2",
               "--yes", "--json"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"syncd move failed: {child.stderr.read().decode() if child.stderr else ''}")
    return seconds, usage.ru_maxrss * 1024


def phase_seconds(root: Path) -> tuple[float, float]:
    """(planning, applying) seconds from the journal's times of the run."""
    out = subprocess.run([str(SYNCD), "--config", str(root / "syncd.toml"), "runs", "--json"],
                         capture_output=True, text=True, check=True).stdout
    run = json.loads(out)[0]
    at = [datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("started_at", "sealed_at", "finished_at")]
    return (at[1] - at[0]).total_seconds(), (at[2] - at[1]).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="about this many rows in the world")
    parser.add_argument("--deployments", type=int, default=20, help="deployments in project 1")
    args = parser.parse_args()
    print(f"reproduce: {sys.executable} scripts/bench_move.py --rows {args.rows} "
          f"--deployments {args.deployments}", flush=True)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-move-") as tmp:
        base = build(Path(tmp) / "world", args.rows, args.deployments)
        moved = list(range(2, args.deployments + 1))
        hand, tool = Path(tmp) / "hand", Path(tmp) / "syncd"
        shutil.copytree(base, hand)
        shutil.copytree(base, tool)
        rows = moved_rows(base / "prod.db", moved)
        hand_s = by_hand(hand / "prod.db", moved)
        syncd_s, rss = by_syncd(tool, moved)
        phases = phase_seconds(tool)
        same = all(scopes(hand / "prod.db", t) == scopes(tool / "prod.db", t) for t in TABLES)
    print(f"\n{'method':<34} {'rows moved':>10} {'seconds':>8} {'rows/s':>10} {'÷ by hand':>9} {'peak RSS':>9}")
    print(f"{'UPDATE … WHERE deployment_id IN':<34} {rows:>10,} {hand_s:>8.2f} {rows / hand_s:>10,.0f} {1:>9.2f} {'-':>9}")
    print(f"{'syncd move (plan, journal, apply)':<34} {rows:>10,} {syncd_s:>8.2f} {rows / syncd_s:>10,.0f}"
          f" {syncd_s / hand_s:>9.2f} {rss / MIB:>6.0f} MiB")
    print(f"syncd's phases: planning {phases[0]:.2f} s, applying {phases[1]:.2f} s")
    print(f"scopes equal: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
