"""`transfer --copy-files` with gs:// blobs, against a real GCS emulator on loopback.

Each test gets its own emulator (tests/gcs_emulator.py) and a world whose blob URIs are
gs://co-prod-data/..., with the objects uploaded there (scripts/world.py --gcs-bucket).
"""
from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import google_crc32c
import pytest

import world as world_module
from conftest import checkpoint_every, files, run, run_process, snapshot
from gcs_emulator import Emulator, emulator  # noqa: F401  (fixture)

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes", "--json")
VIDEOS = 4
BIG = 9 * 1024 * 1024 + 7  # above the 8 MiB single-request limit: resumable upload, chunked


@pytest.fixture
def gs_world(tmp_path: Path, emulator: Emulator) -> world_module.World:
    w = world_module.build_world(tmp_path / "w", videos=VIDEOS, gcs_bucket="co-prod-data")
    emulator.create_bucket("co-dev-data")
    return w


def crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def expected_content(uri: str) -> bytes:
    """The bytes world.py put behind a prod URI (a pure function of its key and kind)."""
    name = uri.rsplit("/", 1)[1]
    key, kind = name.rsplit(".", 1)
    return world_module.blob_content(key, kind)


def dev_uris(w: world_module.World) -> list[str]:
    return sorted(world_module.blob_uris(w.dev_db))


def prod_uris(w: world_module.World) -> list[str]:
    return sorted(world_module.blob_uris(w.prod_db))


def download(uri: str) -> bytes:
    from google.cloud import storage

    bucket, _, key = uri.removeprefix("gs://").partition("/")
    return storage.Client().bucket(bucket).blob(key).download_as_bytes()


def assert_copied(emulator: Emulator, w: world_module.World, prefix: str) -> None:
    """Every dev URI starts with prefix and its object holds the prod object's bytes."""
    uris = dev_uris(w)
    assert len(uris) == len(prod_uris(w)) > VIDEOS
    bucket, _, path = prefix.removeprefix("gs://").partition("/")
    stored = emulator.objects(bucket)
    for uri in uris:
        assert uri.startswith(prefix), uri
        content = expected_content(uri)
        assert stored[uri.removeprefix(f"gs://{bucket}/")]["crc32c"] == crc32c(content)
    assert download(uris[0]) == expected_content(uris[0])
    assert len(stored) == len(uris)


def with_blob_map(w: world_module.World, source: str, target: str) -> None:
    text = w.config.read_text()
    old = next(line for line in text.splitlines() if line.startswith("blob_map"))
    w.config.write_text(text.replace(old, f"blob_map = {{ {json.dumps(source)} = {json.dumps(target)} }}"))


def test_gs_to_gs_derived_bucket_then_rerun_copies_nothing(
        gs_world: world_module.World, emulator: Emulator) -> None:
    result = run(gs_world, *TRANSFER)
    assert result.code == 0, result.stderr
    out = result.json()
    n = len(prod_uris(gs_world))
    assert out["plan"]["files"] == {"copy": n, "existing": 0, "conflict": 0}
    assert out["applied"]["files"] == {"copied": n, "skipped": 0, "failed": 0}
    assert_copied(emulator, gs_world, "gs://co-dev-data/")
    # the rewritten URIs are the prod ones with the derived bucket, nothing else changed
    assert dev_uris(gs_world) == sorted(u.replace("gs://co-prod-data/", "gs://co-dev-data/")
                                        for u in prod_uris(gs_world))
    generations = {k: o["generation"] for k, o in emulator.objects("co-dev-data").items()}

    again = run(gs_world, *TRANSFER)
    assert again.code == 0, again.stderr
    assert again.json()["plan"]["files"] == {"copy": 0, "existing": n, "conflict": 0}
    assert again.json()["applied"]["files"] == {"copied": 0, "skipped": 0, "failed": 0}
    assert {k: o["generation"] for k, o in emulator.objects("co-dev-data").items()} == generations


def test_gs_to_gs_applied_while_planned_copies_the_same(gs_world: world_module.World,
                                                       emulator: Emulator) -> None:
    """Groups of 1 root: the applier process copies each checkpoint's files while the rest
    is planned (architecture §7), the outcome as in one process."""
    with checkpoint_every(1):
        result = run(gs_world, *TRANSFER)
    assert result.code == 0, result.stderr
    n = len(prod_uris(gs_world))
    assert result.json()["applied"]["files"] == {"copied": n, "skipped": 0, "failed": 0}
    assert_copied(emulator, gs_world, "gs://co-dev-data/")
    show = run(gs_world, "show", result.json()["run_id"], "--json").json()
    assert {e["state"] for e in show["entries"]} == {"done"}
    log = [json.loads(line) for line in run(gs_world, "log", "--json").stdout.splitlines()]
    assert sum(e["type"] == "CheckpointSealed" for e in log) >= 2  # so an applier process ran
    assert run(gs_world, "journal", "verify").code == 0


def test_target_bucket_overrides_the_derived_one(gs_world: world_module.World,
                                                 emulator: Emulator) -> None:
    emulator.create_bucket("co-scratch")
    result = run(gs_world, *TRANSFER, "--target-bucket", "co-scratch")
    assert result.code == 0, result.stderr
    assert_copied(emulator, gs_world, "gs://co-scratch/")
    assert emulator.objects("co-dev-data") == {}


def test_blob_map_comes_first(gs_world: world_module.World, emulator: Emulator) -> None:
    emulator.create_bucket("co-archive")
    with_blob_map(gs_world, "gs://co-prod-data/", "gs://co-archive/from-prod/")
    result = run(gs_world, *TRANSFER, "--file-workers", "3")
    assert result.code == 0, result.stderr
    assert_copied(emulator, gs_world, "gs://co-archive/from-prod/")
    assert emulator.objects("co-dev-data") == {}


def test_target_bucket_overrides_blob_map_too(gs_world: world_module.World,
                                             emulator: Emulator) -> None:
    emulator.create_bucket("co-scratch")
    with_blob_map(gs_world, "gs://co-prod-data/", "gs://co-archive/from-prod/")
    result = run(gs_world, *TRANSFER, "--target-bucket", "co-scratch")
    assert result.code == 0, result.stderr
    assert_copied(emulator, gs_world, "gs://co-scratch/")


def test_file_to_gs_streams_up_and_a_rerun_compares_by_crc32c(
        tmp_path: Path, emulator: Emulator) -> None:
    w = world_module.build_world(tmp_path / "w", videos=VIDEOS)
    emulator.create_bucket("co-dev-data")
    with_blob_map(w, w.prod_files.as_uri() + "/", "gs://co-dev-data/files/")
    big = next((w.prod_files / "videos").iterdir())
    big.write_bytes(bytes(range(256)) * (BIG // 256) + b"tail")
    result = run(w, *TRANSFER)
    assert result.code == 0, result.stderr
    stored = emulator.objects("co-dev-data")
    local = world_module.file_tree(w.prod_files)
    assert sorted(stored) == sorted(f"files/{name}" for name in local)
    for name in local:
        data = (w.prod_files / name).read_bytes()
        assert stored[f"files/{name}"]["crc32c"] == crc32c(data)
        assert int(stored[f"files/{name}"]["size"]) == len(data)
    assert all(u.startswith("gs://co-dev-data/files/") for u in dev_uris(w))
    again = run(w, *TRANSFER).json()
    assert again["plan"]["files"] == {"copy": 0, "existing": len(local), "conflict": 0}


def test_gs_to_file_streams_down_atomically(gs_world: world_module.World,
                                           emulator: Emulator) -> None:
    with_blob_map(gs_world, "gs://co-prod-data/", gs_world.dev_files.as_uri() + "/")
    from google.cloud import storage

    big = bytes(range(256)) * (BIG // 256)
    storage.Client().bucket("co-prod-data").blob(prod_uris(gs_world)[0].split("/", 3)[3]) \
        .upload_from_string(big)
    result = run(gs_world, *TRANSFER)
    assert result.code == 0, result.stderr
    got = files(gs_world)
    assert len(got) == len(prod_uris(gs_world))
    assert not [p for p in gs_world.dev_files.rglob(".*")]  # no temp files left
    for uri in dev_uris(gs_world):
        path = Path(uri.removeprefix("file://"))
        expected = big if uri.endswith(prod_uris(gs_world)[0].split("/", 3)[3]) else expected_content(uri)
        assert path.read_bytes() == expected, uri
    again = run(gs_world, *TRANSFER).json()
    assert again["plan"]["files"] == {"copy": 0, "existing": len(got), "conflict": 0}


def test_tampered_target_object_is_reported_then_replaced_with_update(
        gs_world: world_module.World, emulator: Emulator) -> None:
    from google.cloud import storage

    assert run(gs_world, *TRANSFER).code == 0
    victim_uri = dev_uris(gs_world)[0]
    victim = storage.Client().bucket("co-dev-data").blob(victim_uri.split("/", 3)[3])
    victim.upload_from_string(b"tampered")
    out = run(gs_world, *TRANSFER).json()
    assert out["plan"]["files"]["conflict"] == 1
    assert out["applied"]["files"]["copied"] == 0
    assert victim.download_as_bytes() == b"tampered"
    dry = run(gs_world, *TRANSFER[:-2], "--dry-run", "-v")
    assert "conflict" in dry.stdout and "--update" in dry.stdout

    out = run(gs_world, *TRANSFER, "--update").json()
    assert out["plan"]["files"]["copy"] == 1
    assert out["applied"]["files"] == {"copied": 1, "skipped": 0, "failed": 0}
    assert victim.download_as_bytes() == expected_content(victim_uri)


def test_progress_shows_files_and_bytes(gs_world: world_module.World) -> None:
    result = run(gs_world, *TRANSFER[:-1])  # no --json: the progress bar stays on stderr
    assert result.code == 0, result.stderr
    n = len(prod_uris(gs_world))
    total = sum(len(expected_content(u)) for u in prod_uris(gs_world))
    line = next(line for line in result.stderr.splitlines() if line.strip().startswith("files"))
    assert f"{n}/{n}" in line
    from rich.filesize import decimal

    assert f"{decimal(total)} / {decimal(total)}" in line


# -- checked before any write --------------------------------------------------------------

def nothing_written(w: world_module.World, before: dict[str, Any], emulator: Emulator) -> None:
    assert snapshot(w) == before
    assert emulator.objects("co-dev-data") == {}
    runs = run(w, "runs", "--json")  # no journal yet (exit 2), or one without any run
    assert runs.code == 2 or runs.json() == [], runs.stdout


def test_missing_target_bucket_fails_before_any_write(gs_world: world_module.World,
                                                      emulator: Emulator) -> None:
    before = snapshot(gs_world)
    result = run(gs_world, *TRANSFER, "--target-bucket", "co-nowhere")
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and "co-nowhere" in result.stderr
    assert "Traceback" not in result.stderr
    nothing_written(gs_world, before, emulator)
    bad = run(gs_world, *TRANSFER, "--target-bucket", "gs://co-dev-data")
    assert bad.code == 2 and "bucket name" in bad.stderr


def test_unreachable_source_bucket_found_while_planning_fails_before_any_write(
        gs_world: world_module.World, emulator: Emulator) -> None:
    with sqlite3.connect(gs_world.prod_db) as db:  # the last video points into a bucket that is not there
        last = db.execute("SELECT max(id) FROM videos").fetchone()[0]
        db.execute("UPDATE videos SET storage_meta = ? WHERE id = ?",
                   (json.dumps({"gcs": "gs://co-prod-gone/videos/x.mp4"}), last))
    before = snapshot(gs_world)
    result = run(gs_world, *TRANSFER)
    assert result.code == 2, result.stderr
    assert "co-dev-gone" in result.stderr or "co-prod-gone" in result.stderr
    assert result.stderr.count("\n") == 1
    nothing_written(gs_world, before, emulator)


def test_no_credentials_is_one_clear_line(gs_world: world_module.World,
                                          emulator: Emulator,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gs_world.root / "no-such-key.json"))
    before = snapshot(gs_world)
    result = run_process(gs_world, *TRANSFER)
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "credentials" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(gs_world) == before


def test_file_workers_must_be_positive(gs_world: world_module.World) -> None:
    result = run(gs_world, *TRANSFER, "--file-workers", "0")
    assert result.code == 2
    assert "--file-workers" in result.stderr


def test_without_the_gcs_extra_is_one_clear_line(gs_world: world_module.World) -> None:
    """google-cloud-storage made unimportable, as when `syncd[gcs]` is not installed."""
    code = ("import sys; sys.modules['google.cloud.storage'] = None; "
            "from syncd.cli import main; sys.argv = ['syncd'] + sys.argv[1:]; main()")
    before = snapshot(gs_world)
    proc = subprocess.run([sys.executable, "-c", code, "--config", str(gs_world.config), *TRANSFER],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "pip install 'syncd[gcs]'" in proc.stderr
    assert snapshot(gs_world) == before
