"""The data-world generator behind the demo, the benchmark and the transfer tests."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import world as worldgen  # noqa: E402


def rows(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def count(db: Path, table: str) -> int:
    return rows(db, f"SELECT count(*) FROM {table}")[0][0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> worldgen.World:
    return worldgen.build_world(tmp_path_factory.mktemp("world"), videos=12, steps_per_video=4)


def test_prod_counts(world: worldgen.World) -> None:
    expected = {"videos": 12, "video_steps": 48, "annotation_runs": 12, "segmentations": 24,
                "devices": 5, "collectors": 3, "locations": 5, "vendors": 3}
    assert {t: count(world.prod_db, t) for t in expected} == expected
    assert world.counts == expected
    assert world.video_ids == sorted(r[0] for r in rows(world.prod_db, "SELECT id FROM videos"))


def test_parent_counts_scale_with_videos(tmp_path: Path) -> None:
    big = worldgen.build_world(tmp_path, videos=1001, steps_per_video=1, files=False)
    assert big.counts["devices"] == 20
    assert big.counts["collectors"] == 30
    assert big.counts["video_steps"] == 1001
    assert big.video_ids is None  # too many to list
    assert not any(big.prod_files.iterdir())


def test_schema_declares_json_columns_and_indexes(world: worldgen.World) -> None:
    for db in (world.prod_db, world.dev_db):
        types = {(t, r[1]): r[2] for t in ("videos", "segmentations")
                 for r in rows(db, f"PRAGMA table_info({t})")}
        assert types[("videos", "collection_meta")] == "JSON"
        assert types[("videos", "storage_meta")] == "JSON"
        assert types[("segmentations", "mask")] == "JSON"
        indexes = {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"idx_video_steps_video_id", "idx_annotation_runs_video_id",
                "idx_segmentations_annotation_run_id"} <= indexes
    assert rows(world.prod_db, "PRAGMA foreign_key_check") == []


def test_json_references_point_at_prod_parents(world: worldgen.World) -> None:
    dangling = rows(world.prod_db, """
        SELECT v.id FROM videos v
        LEFT JOIN devices d ON d.id = json_extract(v.collection_meta, '$.device_id')
        LEFT JOIN collectors c ON c.id = json_extract(v.collection_meta, '$.collector_id')
        WHERE d.id IS NULL OR c.id IS NULL""")
    assert dangling == []
    sources = {r[0] for r in rows(world.prod_db,
                                  "SELECT json_extract(collection_meta, '$.data_source') FROM videos")}
    assert sources <= {"internal", "partner"}


def test_dev_shares_devices_by_device_no_under_other_ids(world: worldgen.World) -> None:
    prod = dict(rows(world.prod_db, "SELECT device_no, id FROM devices"))
    dev = dict(rows(world.dev_db, "SELECT device_no, id FROM devices"))
    assert sorted(dev) == world.shared_device_nos
    assert len(dev) == 3  # about half of 5
    assert all(dev[no] != prod[no] for no in dev)
    assert world.device_remap == {prod[no]: dev[no] for no in dev}


def test_dev_holds_only_the_shared_parents(world: worldgen.World) -> None:
    assert rows(world.dev_db, "SELECT id FROM locations") == [(world.shared_location_id,)]
    assert rows(world.dev_db, "SELECT id FROM vendors") == [(world.shared_vendor_id,)]
    assert rows(world.prod_db, "SELECT count(*) FROM locations WHERE id = ?",
                world.shared_location_id) == [(1,)]
    dev_collectors = rows(world.dev_db, "SELECT id, name, kind FROM collectors")
    prod_id = rows(world.prod_db, "SELECT id FROM collectors WHERE name = ?",
                   world.shared_collector_name)[0][0]
    assert dev_collectors == [(world.collector_remap[prod_id], world.shared_collector_name,
                               "worker")]
    assert prod_id != dev_collectors[0][0]
    for table in ("videos", "annotation_runs", "segmentations", "video_steps"):
        assert count(world.dev_db, table) == 0
    assert world.dev_files.is_dir() and not any(world.dev_files.iterdir())


def test_every_blob_uri_points_at_an_existing_file(world: worldgen.World) -> None:
    uris = list(worldgen.blob_uris(world.prod_db))
    prefix = world.prod_files.as_uri() + "/"
    assert len(uris) > 12 + 48  # videos + results + some debug logs
    for uri in uris:
        assert uri.startswith(prefix)
        assert Path(url2pathname(urlparse(uri).path)).is_file(), uri
    assert len(worldgen.file_tree(world.prod_files)) == len(uris)
    sizes = [p.stat().st_size for p in world.prod_files.rglob("*") if p.is_file()]
    assert 200 <= min(sizes) and max(sizes) < 8192


def test_about_one_in_four_steps_has_no_debug_ref(world: worldgen.World) -> None:
    nulls = count(world.prod_db, "video_steps WHERE debug_ref IS NULL")
    assert 0 < nulls < 48 // 2


def test_same_seed_same_world(tmp_path: Path) -> None:
    root = tmp_path / "w"  # URIs hold the absolute root: rebuild at the same path
    first = worldgen.build_world(root, videos=6)
    before = (worldgen.snapshot(first.prod_db), worldgen.snapshot(first.dev_db),
              worldgen.file_tree(first.prod_files), first.config.read_text())
    shutil.rmtree(root)
    again = worldgen.build_world(root, videos=6)
    after = (worldgen.snapshot(again.prod_db), worldgen.snapshot(again.dev_db),
             worldgen.file_tree(again.prod_files), again.config.read_text())
    assert before == after
    other = worldgen.build_world(tmp_path / "other", videos=6, seed=8)
    assert worldgen.snapshot(other.prod_db)["videos"] != before[0]["videos"]


def test_snapshot_relative_to_root_compares_worlds_in_different_folders(tmp_path: Path) -> None:
    a = worldgen.build_world(tmp_path / "a", videos=3)
    b = worldgen.build_world(tmp_path / "b", videos=3)
    assert worldgen.snapshot(a.prod_db) != worldgen.snapshot(b.prod_db)
    relocated = worldgen.snapshot(a.prod_db, root=a.root)
    assert relocated == worldgen.snapshot(b.prod_db, root=b.root)
    assert relocated["videos"][0][5].startswith('{"gcs":"file://<root>/prod_files/videos/')


def test_files_flag_does_not_change_records(tmp_path: Path) -> None:
    with_files = worldgen.build_world(tmp_path / "w", videos=4)
    shutil.rmtree(tmp_path / "w")
    without = worldgen.build_world(tmp_path / "w", videos=4, files=False)
    assert worldgen.snapshot(with_files.prod_db) == worldgen.snapshot(without.prod_db)


def test_snapshot_sorts_by_primary_key(world: worldgen.World) -> None:
    snap = worldgen.snapshot(world.prod_db)
    assert set(snap) == set(worldgen.TABLES)
    assert [r[0] for r in snap["video_steps"]] == sorted(r[0] for r in snap["video_steps"])


def test_config_parses(world: worldgen.World) -> None:
    config = tomllib.loads(world.config.read_text())
    assert config["journal"]["url"] == "sqlite:///journal.db"
    assert config["environments"]["prod"] == {"records": "sqlite:///prod.db"}
    assert config["environments"]["dev"]["blob_map"] == {
        world.prod_files.as_uri() + "/": world.dev_files.as_uri() + "/"}
    entities = config["entities"]
    assert entities["devices"]["natural_key"] == ["device_no"]
    assert entities["collectors"]["natural_key"] == ["name"]
    assert entities["videos"]["references"] == {"collection_meta.device_id": "devices",
                                                "collection_meta.collector_id": "collectors"}
    assert entities["videos"]["children"] == ["annotation_runs", "segmentations", "video_steps"]
    assert entities["video_steps"]["blob_fields"] == ["result_ref", "debug_ref"]


def test_refuses_to_overwrite_a_world(world: worldgen.World) -> None:
    with pytest.raises(FileExistsError):
        worldgen.build_world(world.root)


def test_cli_builds_and_replaces_a_world(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(SCRIPTS / "world.py"), str(tmp_path), *args],
                              capture_output=True, text=True)

    built = run("--videos", "3", "--steps", "2")
    assert built.returncode == 0, built.stderr
    assert count(tmp_path / "prod.db", "video_steps") == 6
    refused = run()
    assert refused.returncode == 2 and "--force" in refused.stderr
    (tmp_path / "journal.db").write_bytes(b"")  # as if syncd had run here
    (tmp_path / "keep.txt").write_text("not ours")
    replaced = run("--videos", "2", "--force")
    assert replaced.returncode == 0, replaced.stderr
    assert count(tmp_path / "prod.db", "videos") == 2
    assert not (tmp_path / "journal.db").exists()
    assert (tmp_path / "keep.txt").exists()
