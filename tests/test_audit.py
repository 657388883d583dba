"""The journal answers "what was copied where, when, by which run" — and notices tampering."""
from __future__ import annotations

import json
import re
import sqlite3

from conftest import run
from test_copy import ids
from syncd.payload import row_hash

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
    # the create's hash is the hash of exactly the row that was written
    assert history[0]["hash"] == row_hash(list(written))


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
