"""`syncd transfer`: roots with children, natural keys, files, --update."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from urllib.parse import urlparse

from conftest import files, run, snapshot
from test_copy import ids, rows

TRANSFER = ("transfer", "-s", "prod", "-t", "dev")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_transfer_brings_children_and_remaps_devices(world) -> None:
    result = run(world, *TRANSFER, "-l", "4", "--yes", "--json")
    assert result.code == 0, result.stderr
    videos = sorted(ids(world.prod_db, "videos"))[:4]
    assert ids(world.dev_db, "videos") == set(videos)
    marks = ",".join("?" * 4)
    for table in ("annotation_runs", "video_steps"):
        expected = {r[0] for r in rows(world.prod_db, f"SELECT id FROM {table} WHERE video_id IN ({marks})", *videos)}
        assert expected and ids(world.dev_db, table) == expected
    segs = {r[0] for r in rows(world.prod_db, "SELECT s.id FROM segmentations s JOIN annotation_runs a "
                                 f"ON a.id = s.annotation_run_id WHERE a.video_id IN ({marks})", *videos)}
    assert segs and ids(world.dev_db, "segmentations") == segs
    # devices matched by device_no: the dev id is used, the prod id never appears
    dev_devices = dict(rows(world.dev_db, "SELECT id, device_no FROM devices"))
    for video_id, meta in rows(world.dev_db, "SELECT id, collection_meta FROM videos"):
        (prod_meta,) = rows(world.prod_db, "SELECT collection_meta FROM videos WHERE id = ?", video_id)[0]
        source_device = json.loads(prod_meta)["device_id"]
        assert json.loads(meta)["device_id"] == world.device_remap.get(source_device, source_device)
        assert json.loads(meta)["device_id"] in dev_devices
    # collectors missing in dev are created; the one dev has by name is reused
    names = [r[0] for r in rows(world.dev_db, "SELECT name FROM collectors")]
    assert len(names) == len(set(names))
    out = result.json()
    assert out["applied"]["entities"]["videos"]["created"] == 4
    assert out["plan"]["entities"]["video_steps"]["selected"] == 16


def test_copy_files_copies_rewrites_and_verifies(world) -> None:
    result = run(world, *TRANSFER, "--copy-files", "--yes", "--json")
    assert result.code == 0, result.stderr
    out = result.json()
    uris = [json.loads(m)["gcs"] for (m,) in rows(world.dev_db, "SELECT storage_meta FROM videos")]
    uris += [u for (a, b) in rows(world.dev_db, "SELECT result_ref, debug_ref FROM video_steps") for u in (a, b) if u]
    prefix = world.dev_files.as_uri() + "/"
    assert uris and all(u.startswith(prefix) for u in uris)
    for uri in uris:
        copy = Path(urlparse(uri).path)
        original = world.prod_files / copy.relative_to(world.dev_files)
        assert sha(copy) == sha(original)
    assert out["applied"]["files"]["copied"] == len(uris) == out["plan"]["files"]["copy"]
    # a rerun copies nothing and creates nothing
    again = run(world, *TRANSFER, "--copy-files", "--yes", "--json").json()
    assert again["plan"]["files"] == {"copy": 0, "existing": len(uris), "conflict": 0}
    assert all(c["create"] == 0 for c in again["plan"]["entities"].values())


def test_without_copy_files_uris_are_untouched(world) -> None:
    assert run(world, *TRANSFER, "-l", "2", "--yes").code == 0
    for (meta,) in rows(world.dev_db, "SELECT storage_meta FROM videos"):
        assert json.loads(meta)["gcs"].startswith(world.prod_files.as_uri())
    assert files(world) == {}


def test_tampered_target_file_is_reported_not_overwritten(world) -> None:
    assert run(world, *TRANSFER, "-l", "1", "--copy-files", "--yes").code == 0
    victim = next(p for p in world.dev_files.rglob("*") if p.is_file())
    victim.write_bytes(b"tampered")
    out = run(world, *TRANSFER, "-l", "1", "--copy-files", "--yes", "--json").json()
    assert out["plan"]["files"]["conflict"] == 1
    assert victim.read_bytes() == b"tampered"
    out = run(world, *TRANSFER, "-l", "1", "--copy-files", "--update", "--yes", "--json").json()
    assert out["plan"]["files"]["copy"] == 1
    assert sha(victim) == sha(world.prod_files / victim.relative_to(world.dev_files))


def _edit(db: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


def test_update_patches_only_differing_fields(world) -> None:
    assert run(world, *TRANSFER, "-l", "3", "--yes").code == 0
    first, second, third = sorted(ids(world.dev_db, "videos"))
    _edit(world.prod_db, "UPDATE videos SET title = 'renamed', updated_at = '2030-01-01' WHERE id = ?", first)
    _edit(world.prod_db, "UPDATE videos SET updated_at = '2031-01-01' WHERE id = ?", second)  # ignored field
    _edit(world.dev_db, "UPDATE videos SET duration_s = 1.5 WHERE id = ?", third)
    before = snapshot(world)
    plain = run(world, *TRANSFER, "-l", "3", "--yes", "--json").json()
    assert plain["plan"]["entities"]["videos"]["update"] == 0
    assert snapshot(world) == before  # without --update existing records are untouched
    out = run(world, *TRANSFER, "-l", "3", "--update", "--yes", "--json").json()
    assert out["plan"]["entities"]["videos"]["update"] == 2
    assert out["applied"]["entities"]["videos"]["updated"] == 2
    after = dict((r[0], r) for r in rows(world.dev_db, "SELECT id, title, updated_at, duration_s FROM videos"))
    assert after[first][1] == "renamed"
    assert after[first][2] != "2030-01-01"  # compare_ignore fields are not written
    assert after[second][2] != "2031-01-01"
    (prod_duration,) = rows(world.prod_db, "SELECT duration_s FROM videos WHERE id = ?", third)[0]
    assert after[third][3] == prod_duration
    # children stay create-or-skip
    assert all(c["update"] == 0 for e, c in out["plan"]["entities"].items() if e != "videos")


def test_self_referencing_entity_is_ordered_parents_first(tmp_path: Path) -> None:
    from world import build_world

    w = build_world(tmp_path / "w", videos=1, files=False)
    ddl = ("CREATE TABLE folders (id INTEGER PRIMARY KEY, name TEXT, "
           "parent_id INTEGER REFERENCES folders(id))")
    for db in (w.prod_db, w.dev_db):
        _edit(db, ddl)
    with sqlite3.connect(w.prod_db) as conn:  # children get lower ids than their parents
        conn.executemany("INSERT INTO folders VALUES (?, ?, ?)",
                         [(1, "leaf", 2), (2, "mid", 3), (3, "root", None), (4, "other", None)])
    out = run(w, "copy", "-s", "prod", "-t", "dev", "--entity", "folders", "-f", "id:eq:1", "--yes", "--json")
    assert out.code == 0, out.stderr
    assert out.json()["plan"]["entities"]["folders"] == {
        "selected": 1, "dependencies": 2, "existing": 0, "create": 3, "update": 0, "dangling": 0,
        "clone": 0, "delete": 0, "conflict": 0}
    assert rows(w.dev_db, "SELECT id, parent_id FROM folders ORDER BY id") == [(1, 2), (2, 3), (3, None)]


def test_verbose_lists_every_record_and_file(world) -> None:
    out = run(world, *TRANSFER, "-l", "1", "--copy-files", "--dry-run", "-v")
    assert out.code == 0
    video = sorted(ids(world.prod_db, "videos"))[0]
    assert video in out.stdout
    assert "create" in out.stdout and "copy" in out.stdout


def test_long_parent_chain_and_data_cycle(tmp_path: Path) -> None:
    from world import build_world

    w = build_world(tmp_path / "w", videos=1, files=False)
    for db in (w.prod_db, w.dev_db):
        _edit(db, "CREATE TABLE folders (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES folders(id))")
    depth = 3000  # deeper than Python's recursion limit
    with sqlite3.connect(w.prod_db) as conn:  # folder i's parent is i + 1: children sort first
        conn.executemany("INSERT INTO folders VALUES (?, ?)",
                         [(i, i + 1 if i < depth else None) for i in range(1, depth + 1)])
    out = run(w, "copy", "-s", "prod", "-t", "dev", "--entity", "folders", "--yes", "--json")
    assert out.code == 0, out.stderr
    assert rows(w.dev_db, "SELECT count(*) FROM folders") == [(depth,)]
    with sqlite3.connect(w.prod_db) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.executemany("INSERT INTO folders VALUES (?, ?)", [(10001, 10002), (10002, 10001)])
    cyc = run(w, "copy", "-s", "prod", "-t", "dev", "--entity", "folders", "-f", "id:gt:10000", "--yes")
    assert cyc.code == 2 and "cycle" in cyc.stderr and len(cyc.stderr.strip().splitlines()) == 1
