"""One run request: the CLI and a daemon job build the same RunRequest, checked by the same
rules (syncd/request.py)."""
from __future__ import annotations

import pytest

from conftest import files, run, snapshot
from syncd.config import JobConfig
from syncd.daemon.jobs import Job
from syncd.daemon.schedule import schedule_of
from syncd.errors import InputError
from syncd.request import RunRequest, RunSpec

SPEC = dict(kind="transfer", source="prod", target="dev", entity="videos",
            filters=("duration_s:gt:10",), limit=5, clear=("title",), copy_files=True,
            target_bucket="co-dev-data", update=True)


def test_cli_and_job_build_the_same_request() -> None:
    from_cli = RunRequest.build(**SPEC, job="nightly")
    config = JobConfig(**SPEC, every="1h")  # type: ignore[arg-type]
    from_job = Job("nightly", config, schedule_of("nightly", config)).request(None)
    assert from_cli == from_job
    assert RunRequest.from_options(from_cli.options()) == from_cli  # what the journal keeps


@pytest.mark.parametrize("change, option, problem", [
    ({"limit": 0}, "--limit", "1 or more"),
    ({"limit": -3}, "--limit", "1 or more"),
    ({"limit": "ten"}, "--limit", "Expected `int | null`"),
    ({"target": "prod"}, "--target", "same environment"),
    ({"kind": "copy", "entity": None, "copy_files": False, "target_bucket": None}, "--entity", "required for copy"),
    ({"kind": "copy"}, "--copy-files", "only transfer"),
    ({"copy_files": False}, "--target-bucket", "needs copy_files"),
    ({"kind": "merge"}, "--kind", "Invalid enum value 'merge'"),
])
def test_the_rules_hold_for_every_builder(change: dict[str, object], option: str, problem: str) -> None:
    with pytest.raises(InputError) as cli_error:
        RunRequest.build(**{**SPEC, **change})
    assert str(cli_error.value).startswith(option + ":") and problem in str(cli_error.value)
    if problem.startswith(("Expected", "Invalid")):
        return  # a type error: a job's section is decoded by the same msgspec types
    spec = RunSpec(**{**SPEC, **change})  # type: ignore[arg-type]
    assert spec.problems(), "a job with the same fields is refused by the same rule"


def test_limit_zero_is_refused_by_the_cli_like_a_job(world) -> None:
    before = snapshot(world)
    result = run(world, "transfer", "-s", "prod", "-t", "dev", "-l", "0", "--yes")
    assert result.code == 2, result.stderr
    assert result.stderr.strip().splitlines() == ["syncd: error: --limit: must be 1 or more"]
    assert snapshot(world) == before and files(world) == {}
    assert not (world.root / "journal.db").exists()


def test_target_bucket_without_copy_files_is_an_input_error(world) -> None:
    result = run(world, "transfer", "-s", "prod", "-t", "dev", "--target-bucket", "co-dev-data", "--yes")
    assert result.code == 2
    assert "--target-bucket: needs copy_files" in result.stderr
    assert not (world.root / "journal.db").exists()


def test_target_bucket_with_only_file_blobs_needs_no_gcs(world, monkeypatch) -> None:
    for var in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(world.root))  # no gcloud default credentials either
    result = run(world, "transfer", "-s", "prod", "-t", "dev", "-l", "2", "--copy-files",
                 "--target-bucket", "co-dev-data", "--yes", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["applied"]["files"]["copied"] > 0  # file:// copies went by blob_map
    assert "credentials" not in result.stderr.lower()
