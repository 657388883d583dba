"""One retry layer over HTTP, counted request by request on real loopback servers.

The target is a real `syncd serve` with 5 rows per request, so the videos entry (12 rows) is
written in three requests, behind a proxy that fails the entry's 2nd request exactly as a
script says and logs every request with its body digest and Idempotency-Key. HttpStore is the
only layer that retries HTTP: a request failing N times is sent min(N + 1, attempts) times,
every retry with the request's one key, and the applier does not retry what the store gave up
on. Rows that an earlier request of a split entry committed are journaled `created`, whether
the entry finishes within the attempt (store retries; or the applier's retries, for a store
that does not retry itself) or only on `syncd resume`.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Sequence

import anyio
import pytest

from conftest import run
from http_fixtures import HttpWorld, Request, http_world, requests_in
from journal import open_journal
from syncd.applier import Applier
from syncd.config import load_config
from syncd.errors import TransientError
from syncd.adapters import load_schema, open_store
from syncd.stores.http import HttpOptions

PAGE = 5  # the server's max rows per request
VIDEOS = 12  # so the videos entry is three requests: 5, 5 and 2 rows
TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "-l", str(VIDEOS), "--yes", "--json")
CREATE = "/v1/entities/videos/create"
ATTEMPTS = HttpOptions().attempts


def target_world(tmp_path: Path, script: str = "") -> HttpWorld:
    return http_world(tmp_path / "w", videos=VIDEOS, behind=("dev",), files=False,
                      serve_args=("--max-page", str(PAGE)), faults_script=script)


def creates(hw: HttpWorld) -> list[list[Request]]:
    """The videos entry's create requests, one list per distinct body, in order of first sending."""
    by_body: dict[str, list[Request]] = {}
    for request in requests_in(hw.proxies["dev"].output()):
        if request.path == CREATE:
            by_body.setdefault(request.body, []).append(request)
    return list(by_body.values())


def videos_journaled(hw: HttpWorld, run_id: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """The videos entry as `show --json` has it, its keys in plan order, and their outcomes."""
    show = run(hw.world, "show", run_id, "--json", "-v").json()
    [entry] = [e for e in show["entries"] if e["entity"] == "videos"]
    records = [r for r in show["records"] if r["entity"] == "videos"]
    return entry, [r["key"] for r in records], [r["outcome"] for r in records]


def in_target(hw: HttpWorld, keys: Sequence[str]) -> list[bool]:
    with sqlite3.connect(hw.world.dev_db) as db:
        present = {k for (k,) in db.execute("SELECT id FROM videos")}
    return [k in present for k in keys]


@pytest.mark.parametrize(("fault", "failures"), [("503", 2), ("503-after", ATTEMPTS - 1)])
def test_a_request_failing_n_times_is_sent_n_plus_one_times_with_one_key(
        tmp_path: Path, fault: str, failures: int) -> None:
    # "503-after": the server commits the rows and the answer is lost, so only the same
    # Idempotency-Key on the retry gets "created" (the first answer) rather than "skipped"
    hw = target_world(tmp_path, f"videos/create#2={fault}*{failures}")
    try:
        result = run(hw.world, *TRANSFER)
        sent = creates(hw)
    finally:
        hw.stop()
    assert result.code == 0, result.stderr
    assert [len(requests) for requests in sent] == [1, failures + 1, 1]
    assert [len({r.key for r in requests}) for requests in sent] == [1, 1, 1]  # one key per request
    assert len({requests[0].key for requests in sent}) == 3  # and a key of its own
    entry, _, outcomes = videos_journaled(hw, result.json()["run_id"])
    assert (entry["state"], entry["retries"]) == ("done", 0)  # the store's retries, not the applier's
    assert outcomes == ["created"] * VIDEOS


def test_a_request_failing_every_attempt_fails_the_entry_then_resume_journals_created(
        tmp_path: Path) -> None:
    # the 2nd request commits on every arrival but its answer never comes back
    hw = target_world(tmp_path, f"videos/create#2=503-after*{ATTEMPTS}")
    try:
        failed = run(hw.world, *TRANSFER)
        sent_first = creates(hw)
        run_id = failed.json()["run_id"]
        entry, keys, outcomes = videos_journaled(hw, run_id)
        written = in_target(hw, keys)
        resumed = run(hw.world, "resume", run_id, "--yes", "--json")
        sent = creates(hw)
        _, _, outcomes_resumed = videos_journaled(hw, run_id)
    finally:
        hw.stop()
    assert failed.code == 1, failed.stderr
    # one layer: the 2nd request was sent `attempts` times, not attempts × (applier retries + 1)
    assert [len(requests) for requests in sent_first] == [1, ATTEMPTS]
    assert (entry["state"], entry["retries"]) == ("failed", 0)
    assert f"HTTP 503 (gave up after {ATTEMPTS} attempts)" in entry["error"]
    assert outcomes == ["failed"] * VIDEOS
    assert written == [True] * 2 * PAGE + [False] * (VIDEOS - 2 * PAGE)  # the 3rd never sent

    assert resumed.code == 0, resumed.stderr
    # resume sends the whole entry again, under new keys: the server says "skipped" for the
    # first two requests' rows, and the journal says what this run did: created
    assert [len(requests) for requests in sent] == [2, ATTEMPTS + 1, 1]
    assert len({r.key for r in sent[0]}) == 2
    assert outcomes_resumed == ["created"] * VIDEOS


def test_a_later_request_refused_after_an_earlier_one_committed_then_resume(tmp_path: Path) -> None:
    hw = target_world(tmp_path, "videos/create#2=422*1")
    try:
        failed = run(hw.world, *TRANSFER)
        run_id = failed.json()["run_id"]
        entry, keys, _ = videos_journaled(hw, run_id)
        written = in_target(hw, keys)
        sent_first = creates(hw)
        resumed = run(hw.world, "resume", run_id, "--yes", "--json")
        _, _, outcomes = videos_journaled(hw, run_id)
    finally:
        hw.stop()
    assert failed.code == 1, failed.stderr
    assert [len(requests) for requests in sent_first] == [1, 1]  # a 422 is never retried
    assert entry["state"] == "failed" and "HTTP 422" in entry["error"]
    assert written == [True] * PAGE + [False] * (VIDEOS - PAGE)
    assert resumed.code == 0, resumed.stderr
    assert outcomes == ["created"] * VIDEOS


class FailsAfterFirstRequest:
    """The HTTP target, as a store that does not retry itself: the first videos create sends
    its first request (committed), then fails with a TransientError for the applier to retry."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.failed = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create(self, entity: Any, columns: Sequence[str], rows: Sequence[Any]) -> list[bool]:
        if entity.name == "videos" and not self.failed:
            self.failed = True
            await self.inner.create(entity, columns, rows[:PAGE])
            raise TransientError("injected: failed after its first request committed")
        return list(await self.inner.create(entity, columns, rows))


def test_an_applier_retry_after_a_partial_write_journals_created(tmp_path: Path) -> None:
    hw = http_world(tmp_path / "w", videos=VIDEOS, behind=("dev",), files=False,
                    serve_args=("--max-page", str(PAGE)))
    try:
        planned = run(hw.world, *TRANSFER[:-2], "--plan-only", "--json").json()
        config = load_config(str(hw.world.config))

        async def apply() -> str:
            store = FailsAfterFirstRequest(open_store(config, "dev", readonly=False))
            schema = await load_schema(config, store.inner)
            try:
                applier = Applier(open_journal(hw.world.root / "journal.db"), planned["run_id"],
                                  store, schema)
                return (await applier.run()).status
            finally:
                await store.inner.close()

        status = anyio.run(apply)
        entry, _, outcomes = videos_journaled(hw, planned["run_id"])
    finally:
        hw.stop()
    assert status == "completed"
    assert (entry["state"], entry["retries"]) == ("done", 1)
    # within this one attempt: the retry found the first request's rows present, holding
    # exactly the planned content, which the plan saw absent, so this run created them
    assert outcomes == ["created"] * VIDEOS
