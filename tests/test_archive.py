"""export, import, backup, restore and revert through the real CLI on real SQLite files and
real zip archives (issue 12): round trip, natural keys, conflicts, labels, new ids, deletes of
what was exported, restore equal to the backup, revert back to before a run."""
from __future__ import annotations

import shutil
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import archive_world as aw
import world as world_module
from conftest import Result, files, run, snapshot
from syncd.cli import cli

VIDEOS = ("--entity", "videos")


@pytest.fixture
def w(tmp_path: Path) -> world_module.World:
    world = world_module.build_world(tmp_path / "world", videos=12)
    aw.add_empty_env(world, "empty")
    aw.add_empty_env(world, "other")
    return world


def export(w: world_module.World, out: Path, *args: str) -> Result:
    result = run(w, "export", "-s", "prod", "-o", str(out), "--yes", "--json", *args)
    assert result.code == 0, result.stderr
    return result


def import_(w: world_module.World, archive: Path, target: str, *args: str) -> Result:
    return run(w, "import", str(archive), "-t", target, "--yes", "--json", *args)


def same_files_folder(tables: dict[str, list[tuple]]) -> str:
    """The tables as text, each environment's files folder named alike."""
    return repr(tables).replace("/empty_files/", "/X_files/").replace("/other_files/", "/X_files/")


def test_round_trip_creates_the_same_records_and_files_and_a_second_import_nothing(w, tmp_path):
    out = tmp_path / "videos.zip"
    exported = export(w, out, *VIDEOS, "-l", "5", "--with-files").json()
    assert exported["archive"]["sha256"] and out.is_file()
    assert not (tmp_path / "videos.zip.staging.db").exists()  # removed once verified
    assert run(w, "archive", "verify", str(out)).code == 0

    first = import_(w, out, "empty", "--copy-files")
    assert first.code == 0, first.stderr
    # the same selection transferred directly is the reference
    assert run(w, "transfer", "-s", "prod", "-t", "other", *VIDEOS, "-l", "5", "--copy-files", "--yes").code == 0
    assert same_files_folder(snapshot(w, w.root / "empty.db")) == same_files_folder(snapshot(w, w.root / "other.db"))
    copied = world_module.file_tree(w.root / "empty_files")
    assert copied and copied == world_module.file_tree(w.root / "other_files")

    again = import_(w, out, "empty", "--copy-files")
    assert again.code == 0, again.stderr
    plan = again.json()["plan"]
    assert sum(c["create"] + c["update"] + c["conflict"] for c in plan["entities"].values()) == 0
    assert plan["files"]["copy"] == 0


def test_import_matches_natural_keys_and_remaps_references(w, tmp_path):
    out = tmp_path / "all.zip"
    export(w, out, *VIDEOS)
    dev_copy = w.root / "dev_copy.db"
    shutil.copy(w.dev_db, dev_copy)
    # dev registered some devices under other ids, at other times: matched by device_no, and
    # (their content differing) conflicts that skip leaves as transfer does
    refused = import_(w, out, "dev")
    assert refused.code == 1 and "conflict: devices" in refused.stderr
    result = import_(w, out, "dev", "--on-conflict", "skip")
    assert result.code == 0, result.stderr
    plan = result.json()["plan"]["entities"]
    assert plan["devices"]["conflict"] + plan["devices"]["existing"] >= len(w.shared_device_nos) > 0
    # a transfer of the same selection into an identical dev gives the same records
    text = w.config.read_text().replace('[environments.dev]', '[environments.devcopy]\nrecords = "sqlite:///dev_copy.db"\n\n[environments.dev]', 1)
    w.config.write_text(text)
    assert run(w, "transfer", "-s", "prod", "-t", "devcopy", *VIDEOS, "--yes").code == 0
    assert aw.tables(w.dev_db) == aw.tables(dev_copy)
    videos = {r[0]: r for r in aw.rows(w.dev_db, "videos")}
    dev_devices = {r[0] for r in aw.rows(w.dev_db, "devices")}
    for prod_id, dev_id in w.device_remap.items():
        assert prod_id not in dev_devices and dev_id in dev_devices
    assert any(dev_id in str(v[4]) for v in videos.values() for dev_id in w.device_remap.values())


def _edit_title(db: Path) -> str:
    key = aw.rows(db, "videos")[0][0]
    aw.execute(db, "UPDATE videos SET title = 'edited here' WHERE id = ?", key)
    return key


def test_conflicts_error_skip_update_and_a_resolver(w, tmp_path):
    out = tmp_path / "v.zip"
    export(w, out, *VIDEOS, "-l", "4")
    assert import_(w, out, "empty").code == 0
    key = _edit_title(w.root / "empty.db")
    before = aw.tables(w.root / "empty.db")
    runs_before = len(run(w, "runs", "--json").json())

    refused = import_(w, out, "empty")
    assert refused.code == 1
    assert f"conflict: videos {key}: title differ" in refused.stderr
    assert refused.json()["conflicts"] == [f"videos {key}: title differ"]
    assert aw.tables(w.root / "empty.db") == before  # nothing written
    assert len(run(w, "runs", "--json").json()) <= runs_before + 1  # at most a cancelled run

    skipped = import_(w, out, "empty", "--on-conflict", "skip")
    assert skipped.code == 0 and skipped.json()["plan"]["entities"]["videos"]["conflict"] == 1
    assert aw.tables(w.root / "empty.db") == before

    resolver = tmp_path / "keep_mine.py"
    resolver.write_text("class KeepMine:\n"
                        "    def resolve(self, entity, current, incoming):\n"
                        "        return None if current['title'] == 'edited here' else incoming\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        kept = import_(w, out, "empty", "--resolver", "keep_mine:KeepMine")
    assert kept.code == 0, kept.stderr
    assert aw.tables(w.root / "empty.db") == before

    updated = import_(w, out, "empty", "--on-conflict", "update")
    assert updated.code == 0 and updated.json()["applied"]["entities"]["videos"]["updated"] == 1
    title = {r[0]: r[1] for r in aw.rows(w.prod_db, "videos")}[key]
    assert {r[0]: r[1] for r in aw.rows(w.root / "empty.db", "videos")}[key] == title


def test_built_in_resolver_latest_updated_at(w, tmp_path):
    out = tmp_path / "v.zip"
    export(w, out, *VIDEOS, "-l", "3")
    assert import_(w, out, "empty").code == 0
    db = w.root / "empty.db"
    newer, older = [r[0] for r in aw.rows(db, "videos")][:2]
    aw.execute(db, "UPDATE videos SET title = 'newer', updated_at = '2099-01-01T00:00:00Z' WHERE id = ?", newer)
    aw.execute(db, "UPDATE videos SET title = 'older', updated_at = '2000-01-01T00:00:00Z' WHERE id = ?", older)
    result = import_(w, out, "empty", "--resolver", "latest:updated_at")
    assert result.code == 0, result.stderr
    titles = {r[0]: r[1] for r in aw.rows(db, "videos")}
    prod = {r[0]: r[1] for r in aw.rows(w.prod_db, "videos")}
    assert titles[newer] == "newer" and titles[older] == prod[older]


def test_labels_export_back_what_each_import_wrote(w, tmp_path):
    ids = w.video_ids
    first, second = tmp_path / "first.zip", tmp_path / "second.zip"
    export(w, first, *VIDEOS, "-f", f"id:in:[{','.join(ids[:3])}]")
    export(w, second, *VIDEOS, "-f", f"id:in:[{','.join(ids[3:6])}]")
    assert import_(w, first, "empty", "--label", "L1").code == 0
    assert import_(w, second, "empty", "--label", "L2").code == 0
    aw.execute(w.root / "empty.db", "DELETE FROM video_steps WHERE video_id = ?", ids[0])
    aw.execute(w.root / "empty.db", "DELETE FROM segmentations WHERE annotation_run_id IN "
               "(SELECT id FROM annotation_runs WHERE video_id = ?)", ids[0])
    aw.execute(w.root / "empty.db", "DELETE FROM annotation_runs WHERE video_id = ?", ids[0])
    aw.execute(w.root / "empty.db", "DELETE FROM videos WHERE id = ?", ids[0])

    back = tmp_path / "back.zip"
    result = run(w, "export", "-s", "empty", "-o", str(back), "--label", "L1", "--yes", "--json")
    assert result.code == 0, result.stderr
    with zipfile.ZipFile(back) as z:
        videos = [line for line in z.read("records/videos.ndjson").splitlines() if line]
    exported = {__import__("json").loads(v)["id"] for v in videos}
    assert exported == set(ids[1:3])  # L1's videos still there; none of L2's


def test_new_ids_let_colliding_archives_import_side_by_side(tmp_path):
    config = aw.int_world(tmp_path / "ints", {"a": 5, "b": 4, "c": 0})
    cli_run = lambda *a: CliRunner().invoke(cli, ["--config", str(config), *a])  # noqa: E731
    for env in ("a", "b"):
        r = cli_run("export", "-s", env, "-o", str(tmp_path / f"{env}.zip"), "--all", "--new-ids", "--yes")
        assert r.exit_code == 0, r.stderr
        with zipfile.ZipFile(tmp_path / f"{env}.zip") as z:
            assert "new-ids/items.ndjson" in z.namelist()
    for env in ("a", "b"):
        r = cli_run("import", str(tmp_path / f"{env}.zip"), "-t", "c", "--yes")
        assert r.exit_code == 0, r.stderr
    c = tmp_path / "ints" / "c.db"
    orgs = {r[0]: r[1] for r in aw.rows(c, "orgs") if r[0] >= 1_000_000}
    items = aw.rows(c, "items")
    assert {r[0]: r[1] for r in aw.rows(c, "orgs") if r[0] < 1_000_000} == {1: "c-org1", 2: "c-org2"}
    assert len(orgs) == 4 and len(items) == 9 and min(r[0] for r in items) >= 1_000_000
    by_id = {r[0]: r for r in items}
    for item_id, org_id, name, parent in items:
        env = name.split("-")[0]
        number = int(name.removeprefix(f"{env}-item"))
        assert orgs[org_id] == f"{env}-org{1 + number % 2}"  # references intact
        if number > 1:
            assert by_id[parent][2] == f"{env}-item{number - 1}"


def test_delete_exported_removes_exactly_the_exported_records_and_keeps_shared_parents(w, tmp_path):
    before = aw.tables(w.prod_db)
    out = tmp_path / "gone.zip"
    ids = w.video_ids[:3]
    result = export(w, out, *VIDEOS, "-f", f"id:in:[{','.join(ids)}]", "--delete-exported")
    after = aw.tables(w.prod_db)
    with zipfile.ZipFile(out) as z:
        names = {n.removeprefix("records/").removesuffix(".ndjson"): len(z.read(n).splitlines())
                 for n in z.namelist() if n.startswith("records/")}
    assert {v[0] for v in after["videos"]} == {v[0] for v in before["videos"]} - set(ids)
    for child in ("video_steps", "annotation_runs", "segmentations"):
        assert len(before[child]) - len(after[child]) == names.get(child, 0)
    # locations, vendors and devices are still used by videos that stay: kept
    for parent in ("locations", "vendors"):
        used = {v[2 if parent == "locations" else 3] for v in after["videos"]}
        assert used <= {p[0] for p in after[parent]}
    assert "delete" in run(w, "runs", "--json").stdout


def test_backup_change_restore_then_restore_the_pre_restore_backup(w, tmp_path):
    backup = tmp_path / "dev.zip"
    assert run(w, "backup", "dev", "-o", str(backup)).code == 0
    original = aw.tables(w.dev_db)
    assert run(w, "transfer", "-s", "prod", "-t", "dev", *VIDEOS, "-l", "2", "--yes").code == 0
    aw.execute(w.dev_db, "UPDATE locations SET name = 'changed' WHERE id = ?", w.shared_location_id)
    aw.execute(w.dev_db, "DELETE FROM vendors WHERE id = ?", w.shared_vendor_id)
    changed = aw.tables(w.dev_db)

    result = run(w, "restore", str(backup), "-t", "dev", "--yes", "--json")
    assert result.code == 0, result.stderr
    assert aw.tables(w.dev_db) == original
    saved = sorted(tmp_path.glob("dev-before-restore-*.zip"))
    assert len(saved) == 1
    again = run(w, "restore", str(saved[0]), "-t", "dev", "--yes", "--no-backup")
    assert again.code == 0, again.stderr
    assert aw.tables(w.dev_db) == changed


def _last_run(w: world_module.World) -> str:
    return run(w, "runs", "--json").json()[0]["run_id"]


def test_revert_of_a_transfer_keeps_a_record_edited_since(w):
    before = aw.tables(w.dev_db)
    assert run(w, "transfer", "-s", "prod", "-t", "dev", *VIDEOS, "-l", "3", "--yes").code == 0
    transfer = _last_run(w)
    edited = _edit_title(w.dev_db)
    result = run(w, "revert", transfer, "--yes", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["plan"]["entities"]["videos"]["conflict"] == 1
    after = aw.tables(w.dev_db)
    assert [v[0] for v in after["videos"]] == [edited]
    kept_children = {t: len(r) for t, r in after.items() if r != before[t]}
    assert set(kept_children) <= {"videos", "video_steps", "annotation_runs", "segmentations",
                                  "locations", "vendors", "devices", "collectors"}
    # parents the edited video needs stay; everything else the transfer created is gone
    for table in ("video_steps", "annotation_runs"):
        assert {r[1] for r in after[table]} <= {edited}


def test_revert_of_an_update_import_and_of_a_restore(w, tmp_path):
    out = tmp_path / "v.zip"
    export(w, out, *VIDEOS, "-l", "2")
    assert import_(w, out, "empty").code == 0
    _edit_title(w.root / "empty.db")
    edited = aw.tables(w.root / "empty.db")
    assert import_(w, out, "empty", "--on-conflict", "update").code == 0
    assert run(w, "revert", _last_run(w), "--yes").code == 0
    assert aw.tables(w.root / "empty.db") == edited

    backup = tmp_path / "dev.zip"
    assert run(w, "backup", "dev", "-o", str(backup)).code == 0
    assert run(w, "transfer", "-s", "prod", "-t", "dev", *VIDEOS, "-l", "1", "--yes").code == 0
    aw.execute(w.dev_db, "UPDATE locations SET name = 'changed' WHERE id = ?", w.shared_location_id)
    changed = aw.tables(w.dev_db)
    assert run(w, "restore", str(backup), "-t", "dev", "--yes", "--no-backup").code == 0
    restore = _last_run(w)
    assert run(w, "revert", restore, "--yes").code == 0
    assert aw.tables(w.dev_db) == changed


def test_audit_names_the_archive_a_record_went_into(w, tmp_path):
    out = tmp_path / "a.zip"
    sha = export(w, out, *VIDEOS, "-l", "1").json()["archive"]["sha256"]
    key = w.video_ids[0]
    history = run(w, "audit", key, "--json").json()["history"]
    assert any(str(out) in h["target"] and h.get("archive_sha256") == sha for h in history)


def test_show_lists_entities_and_counts(w, tmp_path):
    out = tmp_path / "a.zip"
    export(w, out, *VIDEOS, "-l", "2")
    shown = run(w, "archive", "show", str(out), "--json")
    assert shown.code == 0
    manifest = shown.json()
    assert manifest["format"] == "syncd-archive" and manifest["format_version"] == 1
    assert {e["name"]: e["count"] for e in manifest["entities"]}["videos"] == 2
    table = run(w, "archive", "show", str(out))
    assert "videos" in table.stdout and table.code == 0


def test_bad_input_is_one_line_exit_2_and_nothing_written(w, tmp_path):
    out = tmp_path / "a.zip"
    export(w, out, *VIDEOS, "-l", "1")
    export_run = _last_run(w)
    before, runs = aw.tables(w.root / "empty.db"), run(w, "runs", "--json").stdout
    cases = [
        ("import", str(out), "-t", "empty", "--resolver", "no_such_module:Thing", "--yes"),
        ("import", str(out), "-t", "empty", "--resolver", "latest", "--yes"),
        ("import", str(tmp_path / "missing.zip"), "-t", "empty", "--yes"),
        ("import", str(out), "-t", "nowhere", "--yes"),
        ("export", "-s", "prod", "-o", str(out), "--all", "--yes"),  # never overwritten
        ("export", "-s", "prod", "-o", str(tmp_path / "b.zip"), "--all", "--entity", "videos", "--yes"),
        ("revert", export_run, "--yes"),
    ]
    for args in cases:
        result = run(w, *args)
        assert result.code == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert aw.tables(w.root / "empty.db") == before
    assert run(w, "runs", "--json").stdout == runs
    assert not (tmp_path / "b.zip").exists()
