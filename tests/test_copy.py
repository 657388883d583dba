"""`syncd copy`: selected records plus every parent they need, and nothing else."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import files, run, snapshot


def rows(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def ids(db: Path, table: str) -> set[str]:
    return {r[0] for r in rows(db, f"SELECT id FROM {table}")}


def test_copy_brings_every_parent_and_nothing_else(world) -> None:
    before = {t: ids(world.dev_db, t) for t in ("devices", "collectors", "locations", "vendors")}
    result = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "videos", "-l", "5", "--yes", "--json")
    assert result.code == 0, result.stderr
    chosen = sorted(ids(world.prod_db, "videos"))[:5]  # deterministic order: by key
    assert ids(world.dev_db, "videos") == set(chosen)  # ids preserved
    metas = [json.loads(m) for (m,) in rows(world.prod_db, "SELECT collection_meta FROM videos WHERE id IN (?,?,?,?,?)", *chosen)]
    parents = rows(world.prod_db, "SELECT location_id, vendor_id FROM videos WHERE id IN (?,?,?,?,?)", *chosen)
    # SQL foreign keys: exactly the referenced locations and vendors were added
    assert ids(world.dev_db, "locations") == before["locations"] | {p[0] for p in parents}
    assert ids(world.dev_db, "vendors") == before["vendors"] | {p[1] for p in parents}
    # JSON-path references: devices not registered in dev were created under their prod id;
    # those dev has under another id (same device_no) were matched, not duplicated
    wanted_devices = {m["device_id"] for m in metas}
    new_devices = {d for d in wanted_devices if d not in world.device_remap}
    assert ids(world.dev_db, "devices") == before["devices"] | new_devices
    wanted_collectors = {m["collector_id"] for m in metas} - set(world.collector_remap)
    assert ids(world.dev_db, "collectors") == before["collectors"] | wanted_collectors
    # nothing else: no children, no files
    for table in ("annotation_runs", "segmentations", "video_steps"):
        assert ids(world.dev_db, table) == set()
    assert files(world) == {}
    assert result.json()["status"] == "completed"


def test_references_to_matched_devices_are_remapped(world) -> None:
    assert run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "videos", "--yes").code == 0
    dev_devices = ids(world.dev_db, "devices")
    for (meta,) in rows(world.dev_db, "SELECT collection_meta FROM videos"):
        device = json.loads(meta)["device_id"]
        assert device in dev_devices
        assert device not in world.device_remap  # never the prod id of a matched device


def test_second_identical_copy_plans_zero_creates(world) -> None:
    args = ("copy", "-s", "prod", "-t", "dev", "--entity", "videos", "-l", "7", "--yes", "--json")
    first = run(world, *args).json()
    assert first["plan"]["entities"]["videos"]["create"] == 7
    before = snapshot(world)
    second = run(world, *args).json()
    assert {e: c["create"] for e, c in second["plan"]["entities"].items()} == dict.fromkeys(second["plan"]["entities"], 0)
    assert second["plan"]["entities"]["videos"]["existing"] == 7
    assert snapshot(world) == before


def test_copy_with_filters_and_clear(world) -> None:
    result = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "videos",
                 "-f", "collection_meta.data_source:eq:internal", "--clear", "storage_meta", "--yes", "--json")
    assert result.code == 0, result.stderr
    internal = {r[0] for r in rows(world.prod_db, "SELECT id FROM videos WHERE json_extract(collection_meta, '$.data_source') = 'internal'")}
    assert internal and ids(world.dev_db, "videos") == internal
    assert rows(world.dev_db, "SELECT count(*) FROM videos WHERE storage_meta IS NOT NULL") == [(0,)]


def test_flat_copy_of_parents_matches_natural_keys(world) -> None:
    result = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "devices", "--yes", "--json")
    counts = result.json()["plan"]["entities"]["devices"]
    assert counts["existing"] == len(world.device_remap)
    assert counts["create"] == counts["selected"] - len(world.device_remap)
    device_nos = [r[0] for r in rows(world.dev_db, "SELECT device_no FROM devices")]
    assert len(device_nos) == len(set(device_nos))  # no device registered twice


def test_dry_run_writes_nothing_anywhere(world) -> None:
    before = snapshot(world)
    result = run(world, "transfer", "-s", "prod", "-t", "dev", "--copy-files", "--dry-run", "--json")
    assert result.code == 0, result.stderr
    out = result.json()
    assert out["status"] == "dry_run" and out["dry_run"] is True and out["run_id"] is None
    assert out["plan"]["entities"]["videos"]["create"] == 20
    assert out["plan"]["files"]["copy"] > 0
    assert snapshot(world) == before
    assert files(world) == {}
    assert not (world.root / "journal.db").exists()


def test_plan_only_journals_and_resume_applies(world) -> None:
    planned = run(world, "transfer", "-s", "prod", "-t", "dev", "--copy-files", "--plan-only", "--json")
    assert planned.code == 0, planned.stderr
    out = planned.json()
    assert out["status"] == "planned"
    assert ids(world.dev_db, "videos") == set() and files(world) == {}
    runs = run(world, "runs", "--json").json()
    assert runs[0]["run_id"] == out["run_id"] and runs[0]["status"] == "planned"
    applied = run(world, "resume", out["run_id"][:15], "--yes", "--json")
    assert applied.code == 0, applied.stderr
    assert applied.json()["status"] == "completed"
    assert len(ids(world.dev_db, "videos")) == 20
    assert len(files(world)) == out["plan"]["files"]["copy"]


def test_prompt_reads_piped_answer(world) -> None:
    declined = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "vendors", input="n\n")
    assert declined.code == 1
    assert "Proceed?" in declined.stderr
    assert ids(world.dev_db, "vendors") == {world.shared_vendor_id}
    accepted = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "vendors", input="y\n")
    assert accepted.code == 0
    assert ids(world.dev_db, "vendors") == ids(world.prod_db, "vendors")
