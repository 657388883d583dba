"""Natural-key matches leave a trace: the journal records which target record each matched
source record is, and `-v`, `show -v` and `audit` say so."""
from __future__ import annotations

from conftest import run


def test_a_natural_key_match_is_journaled_and_audited(world) -> None:
    source_id, target_id = next(iter(world.device_remap.items()))
    plan = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "devices", "--yes", "-v")
    assert plan.code == 0, plan.stderr
    assert f"→ {target_id} in the target" in plan.stdout  # the -v listing names the match
    run_id = run(world, "runs", "--json").json()[0]["run_id"]

    shown = run(world, "show", run_id, "-v", "--json").json()
    matched = [r for r in shown["records"] if r["op"] == "match"]
    assert {r["key"]: r["detail"] for r in matched}[source_id] == f"→ {target_id}"
    assert len(matched) == len(world.device_remap)
    assert all(r["outcome"] == "skipped" for r in matched)  # nothing written for a match
    assert shown["applied"]["entities"]["devices"]["created"] == world.counts["devices"] - len(world.device_remap)

    history = run(world, "audit", source_id, "--entity", "devices", "--json").json()["history"]
    assert [(h["op"], h["detail"]) for h in history] == [("match", f"matched {target_id} in the target")]
    assert run(world, "journal", "verify").code == 0
