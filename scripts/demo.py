"""syncd's main job, end to end: build a prod/dev world in ./.demo and transfer videos with files.

    make demo        (= .venv/bin/python scripts/demo.py)

Every step runs the real `syncd` console script in ./.demo, where syncd.toml lives; the demo
stops with a non-zero exit and says which step failed as soon as one does.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import World, build_world  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parent.parent / ".demo"  # ./.demo under `make demo`
SYNCD = Path(sys.executable).parent / "syncd"
TRANSFER = ["transfer", "-s", "prod", "-t", "dev", "--limit", "10", "--copy-files"]


class DemoFailed(Exception):
    pass


def header(text: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}== {text}{plain}", flush=True)


def syncd(world: World, *args: str, capture: bool = False) -> str:
    """Run `syncd ARGS` in the world's folder; print its command line; fail on non-zero exit."""
    print(f"$ syncd {' '.join(args)}", flush=True)
    done = subprocess.run([str(SYNCD), *args], cwd=world.root, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode != 0:
        raise DemoFailed(f"`syncd {' '.join(args)}` exited with {done.returncode}")
    return done.stdout or ""


def check_nothing_to_create(report: dict) -> None:
    plan = report["plan"]
    creates = {e: counts["create"] for e, counts in plan["entities"].items()}
    if any(creates.values()) or plan["files"]["copy"]:
        raise DemoFailed(f"re-run planned work: create={creates}, files={plan['files']}")
    existing = sum(counts["existing"] for counts in plan["entities"].values())
    print(f"re-run: nothing to create ({existing} records and {plan['files']['existing']} files"
          f" already in dev), status {report['status']}")


def first_video_in(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT id FROM videos ORDER BY id LIMIT 1").fetchone()
    if row is None:
        raise DemoFailed("the transfer created no video in dev")
    return row[0]


def run_demo() -> None:
    if not SYNCD.exists():
        raise DemoFailed(f"{SYNCD} not found: install syncd into this venv (make demo does)")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    world = build_world(DEMO_DIR, videos=20)
    header(f"World in {world.root}: prod has {world.counts['videos']} videos; dev shares "
           f"{len(world.shared_device_nos)} devices by device_no (other ids)")
    header("1. What syncd sees in prod")
    syncd(world, "schema", "prod")
    header("2. Plan 10 videos with children, parents and files — dry run, writes nothing")
    syncd(world, *TRANSFER, "--dry-run")
    header("3. Transfer them")
    syncd(world, *TRANSFER, "--yes")
    copied = sum(1 for p in world.dev_files.rglob("*") if p.is_file())
    print(f"dev_files now holds {copied} files")
    header("4. Again: idempotent, nothing left to create")
    check_nothing_to_create(json.loads(syncd(world, *TRANSFER, "--yes", "--json", capture=True)))
    header("5. Runs in the journal")
    syncd(world, "runs")
    header("6. Audit one transferred video")
    syncd(world, "audit", first_video_in(world.dev_db), "--entity", "videos")
    header("7. Back dev up into an archive, undo the transfer, then restore the backup")
    backup = world.root / "dev-backup.zip"
    syncd(world, "backup", "dev", "-o", str(backup))
    syncd(world, "archive", "show", str(backup))
    runs = json.loads(syncd(world, "runs", "--json", capture=True))
    transfer_run = next(r["run_id"] for r in runs if r["kind"] == "transfer" and r["counts"]["created"])
    syncd(world, "revert", transfer_run, "--yes")  # dev as before step 3...
    syncd(world, "restore", str(backup), "-t", "dev", "--yes", "--no-backup")  # ...and back again
    check_nothing_to_create(json.loads(syncd(world, *TRANSFER, "--yes", "--json", capture=True)))
    header("8. Verify the journal's hash chain and projections")
    syncd(world, "journal", "verify")
    print("\ndemo ok")


def main() -> int:
    try:
        run_demo()
    except DemoFailed as exc:
        print(f"\ndemo FAILED: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        print(f"\ndemo FAILED: `--json` output does not match architecture §6: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
