"""Exit codes say what happened (issue 9 part 7, issue 10 point 7).

A journal that cannot be created or written exits 74 with one line naming the journal and the
reason; a journal path that is plainly wrong (through a regular file, a folder, a file that is
not a journal) is bad input, exit 2. Either way no record, file or event is written. Tests run
as root, so an unwritable folder is a read-only mount, and disk full a full tmpfs, each in a
private mount namespace (`unshare --mount`) that ends with the process; skipped where refused.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SYNCD, Result, files, run, run_process, snapshot
from syncd.cli import app

COPY = ("copy", "-s", "prod", "-t", "dev", "--entity", "vendors", "--yes")
EXIT_STORAGE = 74


def use_journal(world, url: str) -> None:
    text = world.config.read_text()
    assert 'url = "sqlite:///journal.db"' in text  # the world's journal line, replaced below
    world.config.write_text(text.replace('url = "sqlite:///journal.db"', f'url = "{url}"', 1))


def one_line(result: Result) -> str:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def journal_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def assert_untouched(world, before: dict) -> None:
    assert snapshot(world) == before and files(world) == {}
    assert not list(world.root.glob("journal.db*"))


# -- storage failures: exit 74 -----------------------------------------------------------


def test_journal_under_proc_cannot_be_created(world) -> None:
    assert Path("/proc/self").exists() and not Path("/proc/nope").exists()
    use_journal(world, "sqlite:////proc/nope/journal.db")
    before = snapshot(world)
    result = run_process(world, *COPY)
    assert result.code == EXIT_STORAGE, result.stderr
    assert one_line(result) == ("syncd: error: journal /proc/nope/journal.db: cannot create it "
                                "in /proc (no such file or directory)")
    assert_untouched(world, before)


def test_lock_file_beside_a_journal_that_cannot_be_created(world) -> None:
    pytest.importorskip("cronsim")  # the daemon extra
    from daemon_support import add_job
    use_journal(world, "sqlite:////proc/nope/journal.db")
    add_job(world, "nightly", kind="copy", source="prod", target="dev", entity="vendors", every="1d")
    before = snapshot(world)
    result = run(world, "jobs", "run", "nightly")  # opens the journal, then takes the job's lock beside it
    assert result.code == EXIT_STORAGE, result.stderr
    assert one_line(result) == ("syncd: error: journal /proc/nope/journal.db: cannot create it "
                                "in /proc (no such file or directory)")
    assert_untouched(world, before)


def test_locked_journal_gives_up_after_the_busy_timeout(world) -> None:
    assert run(world, *COPY).code == 0
    journal = world.root / "journal.db"
    events = journal_rows(journal)
    locker = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()", str(journal)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
        before = snapshot(world)
        result = run_process(world, "copy", "-s", "prod", "-t", "dev", "--entity", "locations", "--yes",
                             env={"SYNCD_JOURNAL_BUSY_TIMEOUT": "0.2"}, timeout=20)
    finally:
        locker.communicate("")  # closing its stdin ends the locker and its transaction
    assert result.code == EXIT_STORAGE, result.stderr
    assert one_line(result) == (f"syncd: error: journal {journal}: locked by another process "
                                "(waited 0.2 s)")
    assert snapshot(world) == before and journal_rows(journal) == events


def test_bad_busy_timeout_is_bad_input(world, monkeypatch) -> None:
    assert run(world, *COPY).code == 0
    monkeypatch.setenv("SYNCD_JOURNAL_BUSY_TIMEOUT", "soon")
    result = run(world, "runs")
    assert result.code == 2
    assert "SYNCD_JOURNAL_BUSY_TIMEOUT" in one_line(result)


def in_mount_namespace(world, tmp_path: Path, setup: str, *args: str) -> tuple[Result, list[str]]:
    """Run syncd in a private mount namespace after `setup` (sh, with $MNT an empty folder);
    also what $MNT holds when syncd has ended (the mount vanishes with the namespace)."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--mount", "mount", "-t", "tmpfs", "tmpfs", str(tmp_path)],
            capture_output=True).returncode != 0:
        pytest.skip("no private mount namespace here (needs unshare and mount rights)")
    mnt, listing = tmp_path / "mnt", tmp_path / "listing"
    mnt.mkdir()
    script = f'{setup}\n"$@"; rc=$?; ls -A "$MNT" > "$LISTING"; exit $rc'
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", str(SYNCD), "--config", str(world.config), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "MNT": str(mnt), "LISTING": str(listing)})
    assert listing.exists(), proc.stderr  # the setup worked and syncd ran
    return Result(proc.returncode, proc.stdout, proc.stderr), listing.read_text().split()


def test_read_only_journal_folder(world, tmp_path) -> None:
    use_journal(world, f"sqlite:///{tmp_path}/mnt/journal.db")
    before = snapshot(world)
    result, left = in_mount_namespace(world, tmp_path, 'mount -t tmpfs -o ro tmpfs "$MNT" || exit 99', *COPY)
    assert result.code == EXIT_STORAGE, result.stderr
    assert one_line(result) == (f"syncd: error: journal {tmp_path}/mnt/journal.db: cannot create it "
                                f"in {tmp_path}/mnt (read-only file system)")
    assert left == [] and snapshot(world) == before and files(world) == {}


def test_disk_full(world, tmp_path) -> None:
    use_journal(world, f"sqlite:///{tmp_path}/mnt/journal.db")
    before = snapshot(world)
    fill = ('mount -t tmpfs -o size=256k tmpfs "$MNT" || exit 99\n'
            'dd if=/dev/zero of="$MNT/fill" bs=4k 2>/dev/null\n'
            '[ "$(df --output=avail "$MNT" | tail -1)" -eq 0 ] || exit 98')  # full indeed
    result, left = in_mount_namespace(world, tmp_path, fill, *COPY)
    assert result.code == EXIT_STORAGE, result.stderr
    assert one_line(result) == f"syncd: error: journal {tmp_path}/mnt/journal.db: disk full"
    assert snapshot(world) == before and files(world) == {}
    assert set(left) <= {"fill", "journal.db"}  # at most the empty file SQLite could not fill


# -- a journal path that is plainly wrong: exit 2 ----------------------------------------


def test_journal_path_through_a_regular_file(world) -> None:
    assert world.config.is_file()
    use_journal(world, f"sqlite:///{world.config}/journal.db")
    before = snapshot(world)
    result = run(world, *COPY)
    assert result.code == 2, result.stderr
    assert one_line(result) == (f"syncd: error: journal {world.config}/journal.db: "
                                f"{world.config} is a file, not a folder")
    assert_untouched(world, before)


def test_journal_path_is_a_folder(world) -> None:
    (world.root / "journal.db").mkdir()
    before = snapshot(world)
    result = run(world, *COPY)
    assert result.code == 2, result.stderr
    assert one_line(result) == f"syncd: error: journal {world.root / 'journal.db'} is a folder, not a journal"
    assert snapshot(world) == before and files(world) == {}


def test_journal_path_is_not_a_journal(world) -> None:
    (world.root / "journal.db").write_text("my notes\n" * 100)
    before = snapshot(world)
    result = run(world, *COPY)
    assert result.code == 2, result.stderr
    assert one_line(result) == (f"syncd: error: journal {world.root / 'journal.db'}: "
                                "not a journal (not an SQLite database)")
    assert snapshot(world) == before and (world.root / "journal.db").read_text() == "my notes\n" * 100


# -- input errors found after the journal was opened --------------------------------------


def test_input_error_found_while_planning_leaves_no_journal(world) -> None:
    text = world.config.read_text()
    assert "blob_map" in text
    world.config.write_text("\n".join(l for l in text.splitlines() if not l.startswith("blob_map")))
    before = snapshot(world)
    result = run(world, "transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes")
    assert result.code == 2, result.stderr
    assert "no blob_map entry" in one_line(result)  # found by the planner, journal open by then
    assert_untouched(world, before)


# -- every exit code is documented -------------------------------------------------------


def test_every_exit_code_is_documented() -> None:
    codes = {"0", "1", "2", "70", "74", "130", "143"}
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    paragraph = readme[readme.index("\nExit codes"):].split("\n\n", 1)[0]
    assert set(re.findall(r"`(\d+)`", paragraph)) == codes, paragraph
    doc = (app.__doc__ or "").split("Exit codes", 1)[1]  # one code (or two: 130/143) a line
    assert {c for line in re.findall(r"^  ([\d/]+) ", doc, re.M) for c in line.split("/")} == codes, doc
    assert (app.EXIT_FAILED, app.EXIT_INPUT, app.EXIT_INTERNAL, app.EXIT_STORAGE) == (1, 2, 70, EXIT_STORAGE)
