"""A reference that points at nothing in the source is copied as it is, but not silently:
the plan counts such references and `-v` lists them."""
from __future__ import annotations

import json
import sqlite3

from conftest import run


def test_dangling_references_are_counted_and_listed(world) -> None:
    with sqlite3.connect(world.prod_db) as conn:
        video, meta = conn.execute("SELECT id, collection_meta FROM videos ORDER BY id LIMIT 1").fetchone()
        doc = json.loads(meta)
        doc["device_id"] = "no-such-device"
        conn.execute("UPDATE videos SET collection_meta = ? WHERE id = ?", (json.dumps(doc), video))
    result = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "videos", "-f", f"id:eq:{video}",
                 "--dry-run", "--json", "-v")
    assert result.code == 0, result.stderr
    assert result.json()["plan"]["entities"]["devices"]["dangling"] == 1
    assert "Dangling references" in result.stderr  # the plan table (on stderr under --json)
    assert "no-such-device" in result.stderr and "dangling" in result.stderr
    clean = run(world, "copy", "-s", "prod", "-t", "dev", "--entity", "vendors", "--dry-run", "--json")
    assert clean.json()["plan"]["entities"]["vendors"]["dangling"] == 0
