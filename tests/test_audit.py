"""The journal answers "what was copied where, when, by which run" — and notices tampering."""
from __future__ import annotations

import json
import re
import sqlite3

import pytest
from freezegun import freeze_time

from conftest import run
from test_copy import ids
from syncd.payload import json_positions, row_hash

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--yes", "--json")


def test_audit_lists_every_operation_on_a_record(world) -> None:
    first = run(world, *TRANSFER, "-l", "2").json()
    video = sorted(ids(world.dev_db, "videos"))[0]
    with sqlite3.connect(world.dev_db) as conn:
        written = conn.execute("SELECT * FROM videos WHERE id = ?", (video,)).fetchone()
    with sqlite3.connect(world.prod_db) as conn:
        conn.execute("UPDATE videos SET title = 'new title' WHERE id = ?", (video,))
    second = run(world, *TRANSFER, "-l", "2", "--update").json()
    result = run(world, "audit", video, "--entity", "videos", "--json")
    assert result.code == 0
    audit = result.json()
    assert audit["key"] == video and audit["entity"] == "videos"
    history = audit["history"]
    assert [(h["run_id"], h["op"], h["outcome"]) for h in history] == [
        (first["run_id"], "create", "created"), (second["run_id"], "update", "updated")]
    for h in history:
        assert h["source"] == "prod" and h["target"] == "dev" and h["at"].endswith("Z")
        assert len(h["hash"]) == 32
    # the create's hash is the hash of exactly the row that was written, its JSON columns
    # (collection_meta, storage_meta) taken as canonical JSON
    with sqlite3.connect(world.dev_db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(videos)")]
    assert history[0]["hash"] == row_hash(list(written), json_positions(columns, {"collection_meta", "storage_meta"}))
    assert history[0]["hash"] != row_hash(list(written))


def test_audit_of_unknown_key_is_empty(world) -> None:
    run(world, *TRANSFER, "-l", "1")
    assert run(world, "audit", "no-such-key", "--json").json()["history"] == []


def test_show_and_log(world) -> None:
    out = run(world, *TRANSFER, "-l", "1").json()
    show = run(world, "show", out["run_id"], "--json", "-v").json()
    assert show["status"] == "completed"
    assert {e["state"] for e in show["entries"]} == {"done"}
    assert sum(e["records"] for e in show["entries"]) == len(show["records"])
    assert all(r["outcome"] == ("skipped" if r["op"] == "match" else "created") for r in show["records"])
    lines = [json.loads(l) for l in run(world, "log", "--run", out["run_id"], "--json").stdout.splitlines()]
    types = [l["type"] for l in lines]
    assert types[0] == "RunStarted" and types[-1] == "RunFinished" and "PlanSealed" in types
    assert [l["seq"] for l in lines] == sorted(l["seq"] for l in lines)


def test_journal_verify_detects_an_edited_event(world) -> None:
    run(world, *TRANSFER, "-l", "2")
    assert run(world, "journal", "verify").code == 0
    db = world.root / "journal.db"
    with sqlite3.connect(db) as conn:
        with_triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name='events'").fetchall()
        for name, _ in with_triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        assert conn.execute("SELECT min(seq) FROM events").fetchone() == (1,)
        edited = conn.execute("UPDATE events SET body = CAST(replace(CAST(body AS TEXT), 'prod', 'prud') AS BLOB) "
                              "WHERE seq = 1")
        assert edited.rowcount == 1
        for _, sql in with_triggers:
            conn.execute(sql)
    result = run(world, "journal", "verify")
    assert result.code == 1
    # the edited event, and only it, is named, as a broken hash chain
    broken = re.findall(r"^seq (\d+): (.*)$", result.stderr, re.MULTILINE)
    assert [seq for seq, _ in broken] == ["1"], result.stderr
    assert "hash does not match" in broken[0][1]


def test_journal_verify_detects_events_cut_off_the_end(world) -> None:
    """Drop the trigger, delete the last events, rebuild: the chain left is valid, but the
    head kept outside the events (and a published one) says more came after it."""
    run(world, *TRANSFER, "-l", "2")
    published = run(world, "journal", "head")
    assert published.code == 0 and re.fullmatch(r"\d+:[0-9a-f]{64}\n", published.stdout)
    head = run(world, "journal", "head", "--json").json()
    assert published.stdout.strip() == f"{head['seq']}:{head['hash']}"
    assert run(world, "journal", "verify", "--expect", published.stdout.strip()).code == 0
    with sqlite3.connect(world.root / "journal.db") as conn:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='events'")
        for (name,) in triggers.fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        assert conn.execute("DELETE FROM events WHERE seq > ?", (head["seq"] - 3,)).rowcount == 3
    assert run(world, "journal", "rebuild").code == 0
    result = run(world, "journal", "verify")
    assert result.code == 1
    assert f"events end at seq {head['seq'] - 3} but the head file says seq {head['seq']}" in result.stderr
    # an operator who kept the head elsewhere sees it too, even with the head file rewritten
    (world.root / "journal.db-head").write_text(run(world, "journal", "head").stdout)
    assert run(world, "journal", "verify").code == 0
    expected = run(world, "journal", "verify", "--expect", published.stdout.strip())
    assert expected.code == 1 and "the expected head says seq" in expected.stderr


def test_journal_verify_refuses_a_malformed_expected_head(world) -> None:
    run(world, *TRANSFER, "-l", "1")
    result = run(world, "journal", "verify", "--expect", "12:nothex")
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "syncd: error: Invalid value for '--expect': '12:nothex' is not SEQ:HASH"
        " (a number, a colon, 64 hex digits)"]


def test_audit_is_ordered_by_the_time_it_shows(world) -> None:
    """A run planned first but applied last is listed last, and JSON says which time "at" is."""
    with freeze_time("2026-12-03 07:00:00"):
        first = run(world, *TRANSFER, "-l", "1", "--plan-only").json()["run_id"]
    with freeze_time("2026-12-03 08:00:00"):
        second = run(world, *TRANSFER, "-l", "1").json()["run_id"]
    video = sorted(ids(world.dev_db, "videos"))[0]
    with freeze_time("2026-12-03 09:00:00"):
        assert run(world, "resume", first, "--yes").code == 0
    history = run(world, "audit", video, "--entity", "videos", "--json").json()["history"]
    assert [(h["run_id"], h["at"], h["at_is"]) for h in history] == [
        (second, "2026-12-03T08:00:00.000000Z", "applied"),
        (first, "2026-12-03T09:00:00.000000Z", "applied")]
    assert history[1]["planned_at"] == "2026-12-03T07:00:00.000000Z"
    table = run(world, "audit", video, "--entity", "videos").stdout
    assert table.index(second) < table.index(first)


def test_log_since_parses_iso_instants(world) -> None:
    with freeze_time("2026-12-03 07:00:00"):
        early = run(world, *TRANSFER, "-l", "1").json()["run_id"]
    with freeze_time("2026-12-03 08:00:00"):
        late = run(world, *TRANSFER, "-l", "2").json()["run_id"]

    def runs_since(since: str) -> set[str]:
        result = run(world, "log", "--since", since, "--json")
        assert result.code == 0, result.stderr
        return {json.loads(line)["run"] for line in result.stdout.splitlines()}

    assert runs_since("2026-12-03") == {early, late}  # a date alone: its midnight UTC
    assert runs_since("2026-12-03T07:30:00") == {late}  # no offset: UTC
    assert runs_since("2026-12-03 07:30:00") == {late}
    assert runs_since("2026-12-03T08:30:00+01:00") == {late}  # 07:30 UTC
    assert runs_since("2026-12-03T06:30:00-01:00") == {late}
    assert runs_since("2026-12-03T07:30:00+02:00") == {early, late}  # 05:30 UTC
    assert runs_since("2026-12-03T08:00:00Z") == {late}  # at or after
    assert runs_since("2026-12-04") == set()


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "07:15", ""])
def test_log_since_refuses_what_is_not_an_instant(world, since: str) -> None:
    run(world, *TRANSFER, "-l", "1")
    assert run(world, "log", "--since", "2026-01-01").stdout  # the option works
    result = run(world, "log", "--since", since)
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"syncd: error: Invalid value for '--since': {since!r} is not an ISO-8601")
    assert len(result.stderr.strip().splitlines()) == 1


def test_events_cannot_be_updated_or_deleted(world) -> None:
    run(world, *TRANSFER, "-l", "1")
    with sqlite3.connect(world.root / "journal.db") as conn:
        for sql in ("UPDATE events SET run = 'x'", "DELETE FROM events"):
            try:
                conn.execute(sql)
            except sqlite3.DatabaseError as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{sql} was allowed")


def test_rebuilt_projections_equal_live_ones(world) -> None:
    run(world, *TRANSFER, "-l", "3", "--copy-files")
    run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "devices", "--yes")
    from journal import open_journal

    journal = open_journal(world.root / "journal.db")
    live = journal.projection_snapshot()
    assert run(world, "journal", "rebuild").code == 0
    assert journal.projection_snapshot() == live
    assert run(world, "journal", "verify").code == 0
