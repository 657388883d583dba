"""The gs:// BlobStore itself, against a real emulator: rewrite tokens, preconditions,
verification, and how backend errors come out (architecture §2: one exception tree)."""
from __future__ import annotations

import base64
from pathlib import Path

import google_crc32c
import pytest
from google.cloud import storage

from gcs_emulator import KIND, Emulator, RewriteSplitter, emulator  # noqa: F401  (fixture)
from syncd import blobs
from syncd.blobs.base import Planned
from syncd.blobs.gcs import GcsBlobStore
from syncd.errors import InputError, PermanentError, TransientError

DATA = b"0123456789" * 1000


def crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


@pytest.fixture
def buckets(emulator: Emulator) -> storage.Client:
    emulator.create_bucket("src")
    emulator.create_bucket("dst")
    client = storage.Client()
    client.bucket("src").blob("a/b.bin").upload_from_string(DATA)
    return client


def planned_of(uri: str) -> Planned:
    stat = blobs.stat(uri)
    assert stat is not None
    return Planned(stat.size, stat.crc32c, stat.generation)


def test_stat_reports_size_and_checksums_and_none_when_missing(buckets: storage.Client) -> None:
    stat = blobs.stat("gs://src/a/b.bin")
    assert stat is not None
    assert (stat.size, stat.crc32c) == (len(DATA), crc32c(DATA))
    assert stat.md5 and stat.generation
    assert blobs.stat("gs://src/nope") is None


def test_rewrite_continues_with_the_rewrite_token(buckets: storage.Client, emulator: Emulator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    planned = planned_of("gs://src/a/b.bin")
    with RewriteSplitter(emulator.url) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)  # a new client, through the proxy
        got = GcsBlobStore().copy("gs://src/a/b.bin", "gs://dst/a/b.bin", planned, 0)
    assert len(proxy.rewrites) == 2
    assert "rewriteToken" not in proxy.rewrites[0]
    assert "rewriteToken=syncd-test-token-1" in proxy.rewrites[1]
    assert "ifGenerationMatch=0" in proxy.rewrites[1]  # the precondition goes with every call
    assert (got.size, got.crc32c) == (len(DATA), crc32c(DATA))
    assert buckets.bucket("dst").blob("a/b.bin").download_as_bytes() == DATA


def test_a_copy_that_would_not_match_the_plan_fails_for_good(buckets: storage.Client) -> None:
    stale = Planned(len(DATA), crc32c(b"other bytes"), None)  # the source changed after planning
    with pytest.raises(PermanentError, match="differs from the planned"):
        blobs.put("gs://src/a/b.bin", "gs://dst/a/b.bin", stale, None)
    with pytest.raises(PermanentError, match="not found"):
        blobs.put("gs://src/missing", "gs://dst/missing", Planned(1), 0)


def test_ensure_skips_a_target_that_already_holds_the_bytes(buckets: storage.Client) -> None:
    planned = planned_of("gs://src/a/b.bin")
    assert blobs.ensure("gs://src/a/b.bin", "gs://dst/x", planned, look_first=True) is True
    generation = buckets.bucket("dst").get_blob("x").generation
    assert blobs.ensure("gs://src/a/b.bin", "gs://dst/x", planned, look_first=True) is False
    assert buckets.bucket("dst").get_blob("x").generation == generation  # not written again


@pytest.mark.skipif(KIND != "fake-gcs-server", reason="the emulator must enforce ifGenerationMatch")
def test_upload_only_if_absent_then_looks_and_skips(buckets: storage.Client, tmp_path: Path) -> None:
    """A first attempt does not look before writing: GCS refuses the write when the target
    exists (412), and then ensure() looks and finds the same bytes."""
    local = tmp_path / "b.bin"
    local.write_bytes(DATA)
    buckets.bucket("dst").blob("up").upload_from_string(DATA)
    generation = buckets.bucket("dst").get_blob("up").generation
    uri = local.as_uri()
    assert blobs.ensure(uri, "gs://dst/up", Planned(len(DATA)), look_first=False) is False
    assert buckets.bucket("dst").get_blob("up").generation == generation
    buckets.bucket("dst").blob("up").upload_from_string(b"other")  # now it differs: replaced
    assert blobs.ensure(uri, "gs://dst/up", Planned(len(DATA)), look_first=False) is True
    assert buckets.bucket("dst").blob("up").download_as_bytes() == DATA


def test_local_and_gs_compare_by_crc32c_without_downloading(buckets: storage.Client,
                                                            tmp_path: Path) -> None:
    local = tmp_path / "same.bin"
    local.write_bytes(DATA)
    remote = blobs.stat("gs://src/a/b.bin")
    assert remote is not None
    here = blobs.stat(local.as_uri())
    assert here is not None
    assert blobs.same(local.as_uri(), "gs://src/a/b.bin", here, remote)
    local.write_bytes(DATA[:-1] + b"!")  # same size, other bytes
    assert not blobs.same(local.as_uri(), "gs://src/a/b.bin", here, remote)


def test_errors_map_to_transient_or_permanent(buckets: storage.Client, emulator: Emulator) -> None:
    with pytest.raises(InputError, match="gs://nobucket"):
        blobs.check_buckets(["gs://nobucket/x"])
    emulator.stop()
    with pytest.raises(TransientError, match="cannot reach GCS"):
        blobs.stat("gs://src/a/b.bin")
    with pytest.raises(InputError, match="cannot reach GCS"):
        blobs.check_buckets(["gs://dst/x"])
