"""Fault injection: a transfer through real proxies that break one request in ten.

Both environments sit behind a `syncd serve` with a small page size (so the client splits
every call into many requests) and a fault proxy that, in every window of ten requests, fails
one: a 500 before or after the server did the work, a 429 with Retry-After, a stall past the
client's timeout, or a dropped connection before or after the work. The transfer must complete
with exactly the result, and the journal, of an uninterrupted SQLite → SQLite run, and every
retry must show on stderr.
"""
from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import world as world_module
from conftest import files, run, run_process, snapshot
from http_fixtures import FAULTS, faults_in, http_world

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes", "--json")
VIDEOS, SEED = 30, 5


def journal_of(w: world_module.World, run_id: str) -> tuple[list[tuple], list[tuple]]:
    show = run(w, "show", run_id, "--json", "-v").json()
    entries = [(e["entity"], e["op"], e["records"], e["state"], e["created"], e["skipped"], e["failed"])
               for e in show["entries"]]
    records = [(r["entity"], r["key"], r["op"], r["outcome"], r["hash"]) for r in show["records"]]
    return entries, records


def test_transfer_through_faults_equals_a_clean_run(tmp_path: Path) -> None:
    place = tmp_path / "w"  # both worlds at one path: equal blob URIs, equal content hashes
    clean = world_module.build_world(place, videos=VIDEOS, seed=SEED)
    out = run(clean, *TRANSFER)
    assert out.code == 0, out.stderr
    want = (snapshot(clean), files(clean), journal_of(clean, out.json()["run_id"]))
    shutil.rmtree(place)

    hw = http_world(place, videos=VIDEOS, seed=SEED, serve_args=("--max-page", "20"),
                    faults_every=10, timeout=1.5)
    try:
        result = run_process(hw.world, *TRANSFER)
        injected = [f for proxy in hw.proxies.values() for f in faults_in(proxy.output())]
    finally:
        hw.stop()
    assert result.code == 0, result.stderr[-3000:]
    output = result.json()
    assert output["status"] == "completed"
    got = (snapshot(hw.world), files(hw.world), journal_of(hw.world, output["run_id"]))
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert got[2] == want[2]  # same entries, outcomes (created stays created) and hashes
    assert run(hw.world, "journal", "verify").code == 0

    # every kind of fault happened, and each one cost one retry, shown on stderr
    assert set(injected) == set(FAULTS), injected
    retries = re.findall(r"^(prod|dev): (GET|POST) \S+: (.+); retry \d+ of \d+ in ([\d.]+)s(.*)$",
                         result.stderr, flags=re.MULTILINE)
    problems = Counter(problem for _, _, problem, _, _ in retries)
    expected = Counter({"HTTP 500": injected.count("500-before") + injected.count("500-after"),
                        "HTTP 429": injected.count("429"),
                        "connection dropped": injected.count("drop-before") + injected.count("drop-after")})
    assert {p: problems[p] for p in expected} == expected, result.stderr
    # a stall always times out; on a busy machine a slow request may too (one more retry)
    assert problems["timeout"] >= injected.count("stall") >= 1
    assert set(problems) == {*expected, "timeout"}
    assert all(float(delay) == 1.0 and note == " (Retry-After)"
               for _, _, problem, delay, note in retries if problem == "HTTP 429")
    summaries = re.findall(r"^(prod|dev): (\d+) HTTP requests retried", result.stderr, re.MULTILINE)
    assert sum(int(n) for _, n in summaries) == len(retries)
    # (the proxies' logs do show tracebacks: that is how they drop connections)
    assert "Traceback" not in result.stderr + "".join(s.output() for s in hw.servers.values())


def test_an_unreachable_server_fails_after_the_retries_with_one_line(tmp_path: Path) -> None:
    hw = http_world(tmp_path / "w", videos=2, behind=("prod",), timeout=1.0)
    hw.servers["prod"].stop()
    result = run_process(hw.world, *TRANSFER)
    assert result.code == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("syncd: failed: prod: GET /v1/schema: connection refused")
    assert "gave up after 6 attempts" in last
    assert len(re.findall(r"retry \d of 5", result.stderr)) == 5
    assert "Traceback" not in result.stderr
    assert not (hw.world.root / "journal.db").exists()  # failed while connecting: nothing written
