"""syncd clone on an Antenna-like world (tests/antenna_world.py): new records under new keys,
references among the clones pointing at the clones, the source untouched, keys journaled so a
killed clone resumes with the same ones."""
from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import antenna_world as antenna
import world as world_module
from conftest import run, run_process

CLONE = ("clone", "-s", "lab", "--entity", "projects", "-f", "id:eq:1", "--yes", "--json")


@pytest.fixture
def lab(tmp_path: Path) -> world_module.World:
    return antenna.build(tmp_path / "lab")


def by_id(db: Path, table: str) -> dict[Any, tuple[Any, ...]]:
    return {r[0]: r for r in antenna.rows(db, table)}


def clone_keys(w: world_module.World, run_id: str) -> dict[str, dict[Any, Any]]:
    """entity → source key → clone key, as the journal's clone entries say."""
    records = run(w, "show", run_id, "-v", "--json").json()["records"]
    found: dict[str, dict[Any, Any]] = {}
    for r in records:
        if r["op"] == "clone":
            found.setdefault(r["entity"], {})[int(r["key"])] = int(r["detail"].removeprefix("→ "))
    return found


def test_clone_of_a_projects_structure(lab: world_module.World) -> None:
    before = antenna.snapshot(lab.prod_db)
    result = run(lab, *CLONE, *antenna.STRUCTURE, "--set", "name=Template copy")
    assert result.code == 0, result.stderr
    out = result.json()
    assert out["status"] == "completed"
    clones = {name: c["clone"] for name, c in out["plan"]["entities"].items()}
    assert clones == {"projects": 1, "devices": 2, "sites": 1, "deployments": 3}
    after = antenna.snapshot(lab.prod_db)
    for table, old_rows in before.items():  # the source records are untouched
        assert set(old_rows) <= set(after[table]), table
    for table in ("events", "source_images", "occurrences", "taxa"):  # structure, not data
        assert after[table] == before[table]
    keys = clone_keys(lab, out["run_id"])
    assert keys["projects"] == {1: 5}  # the next free integer above the largest key
    assert set(keys["deployments"].values()) == {36, 37, 38}
    project = by_id(lab.prod_db, "projects")[5]
    assert project == (5, "Template copy")
    devices, deployments = by_id(lab.prod_db, "devices"), by_id(lab.prod_db, "deployments")
    for old, new in keys["devices"].items():
        assert devices[new][1:] == (devices[old][1], 5)
    for old, new in keys["deployments"].items():
        _, name, project_id, device, site, settings = deployments[old]
        # references to cloned records point at the clones; the rest stay as they were
        assert deployments[new] == (new, name, 5, keys["devices"].get(device, device),
                                    keys["sites"].get(site, site), settings)
    assert deployments[keys["deployments"][32]][3:5] == (13, 22)  # a global device and site


def test_clone_with_every_child_copies_the_data_below_and_keeps_global_parents(
        lab: world_module.World) -> None:
    out = run(lab, *CLONE).json()
    assert out["status"] == "completed"
    keys = clone_keys(lab, out["run_id"])
    occurrences = by_id(lab.prod_db, "occurrences")
    assert len(keys["occurrences"]) == 18 and len(keys["events"]) == 9
    for old, new in keys["occurrences"].items():
        _, score, deployment, event, taxon, _ = occurrences[old]
        assert occurrences[new] == (new, score, keys["deployments"][deployment],
                                    keys["events"][event], taxon, 5)


def test_audit_names_a_records_clones_and_a_clones_origin(lab: world_module.World) -> None:
    out = run(lab, *CLONE, *antenna.STRUCTURE).json()
    source = run(lab, "audit", "30", "--entity", "deployments", "--json").json()["history"]
    assert [(h["op"], h["detail"]) for h in source] == [("clone", "cloned as 36")]
    clone = run(lab, "audit", "36", "--entity", "deployments", "--json").json()["history"]
    assert [(h["run_id"], h["op"], h["outcome"], h["detail"]) for h in clone] == [
        (out["run_id"], "create", "created", "clone of 30")]


def test_dry_run_writes_nothing_and_plans_what_the_clone_does(lab: world_module.World) -> None:
    before = antenna.snapshot(lab.prod_db)
    dry = run(lab, *CLONE, *antenna.STRUCTURE, "--dry-run")
    assert dry.code == 0 and dry.json()["status"] == "dry_run"
    assert antenna.snapshot(lab.prod_db) == before and not (lab.root / "journal.db").exists()
    real = run(lab, *CLONE, *antenna.STRUCTURE).json()
    assert dry.json()["plan"] == real["plan"]


def test_a_killed_clone_resumes_with_the_planned_keys_and_nothing_twice(
        lab: world_module.World, tmp_path: Path) -> None:
    clean = antenna.build(tmp_path / "clean")
    reference = run(clean, *CLONE).json()
    killed = run_process(lab, *CLONE, env={"SYNCD_FAILPOINT": "apply.after-effect:3"})
    assert killed.code == -signal.SIGKILL, killed.stderr
    run_id = run(lab, "runs", "--json").json()[0]["run_id"]
    planned = clone_keys(lab, run_id)
    resumed = run_process(lab, "resume", run_id, "--yes", "--json")
    assert resumed.code == 0, resumed.stderr
    assert clone_keys(lab, run_id) == planned
    # integer keys are chosen the same way in both worlds: the targets are equal
    assert antenna.snapshot(lab.prod_db) == antenna.snapshot(clean.prod_db)
    shown = run(lab, "show", run_id, "--json").json()
    created = sum(e["created"] for e in shown["entries"])
    assert created == sum(e["created"] for e in run(clean, "show", reference["run_id"], "--json").json()["entries"])
    assert all(e["state"] == "done" and e["failed"] == 0 for e in shown["entries"])
    assert run(lab, "journal", "verify").code == 0


def test_a_key_taken_since_planning_fails_its_entry(lab: world_module.World) -> None:
    planned = run(lab, *CLONE, *antenna.STRUCTURE, "--plan-only").json()["run_id"]
    with sqlite3.connect(lab.prod_db) as conn:  # the application takes the next project id
        conn.execute("INSERT INTO projects VALUES (5, 'made meanwhile')")
    conn.close()
    result = run(lab, "resume", planned, "--yes", "--json")
    assert result.code == 1
    assert "1 new key(s) taken since planning, first projects 5" in result.json()["error"]
    assert by_id(lab.prod_db, "projects")[5] == (5, "made meanwhile")


def test_clone_into_another_environment_brings_the_parents_it_needs(lab: world_module.World) -> None:
    out = run(lab, "clone", "-s", "lab", "-t", "other", "--entity", "deployments", "-f", "id:eq:30",
              "--yes", "--json").json()
    assert out["status"] == "completed"
    plan = out["plan"]["entities"]
    assert plan["deployments"]["clone"] == 1 and plan["occurrences"]["clone"] == 6
    # the parents it needs come as transfer brings them, under their own keys
    assert {name: plan[name]["create"] for name in ("projects", "devices", "sites", "taxa")} == \
        {"projects": 1, "devices": 1, "sites": 1, "taxa": 4}
    deployment = antenna.rows(lab.dev_db, "deployments")
    assert len(deployment) == 1 and deployment[0][0] == 1 and deployment[0][2:5] == (1, 10, 20)
    assert {r[2] for r in antenna.rows(lab.dev_db, "events")} == {1}  # the clone, not 30


@pytest.mark.parametrize(("args", "message"), [
    (("--include", "nope"), "unknown entity 'nope'"),
    (("--include", "taxa"), "--include: 'taxa' is not below 'projects'"),
    (("--set", "colour=red"), "--set: unknown field 'colour' on entity 'projects'"),
    (("--set", "id=9"), "--set: 'id' is the key, which clone chooses"),
    (("--set", "name"), "--set 'name': expected FIELD=VALUE"),
    (("--update",), "No such option '--update'"),
])
def test_bad_clone_input_is_one_line_exit_2_and_nothing_written(
        lab: world_module.World, args: tuple[str, ...], message: str) -> None:
    assert run(lab, *CLONE, "--dry-run").code == 0  # the command works on good input
    before = antenna.snapshot(lab.prod_db)
    result = run(lab, *CLONE, *args)
    assert result.code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert antenna.snapshot(lab.prod_db) == before and not (lab.root / "journal.db").exists()


def test_a_set_value_is_typed_by_its_column(lab: world_module.World) -> None:
    with sqlite3.connect(lab.prod_db) as conn:
        conn.execute("ALTER TABLE projects ADD COLUMN priority INTEGER")
    conn.close()
    bad = run(lab, *CLONE, *antenna.STRUCTURE, "--set", "priority=high")
    assert bad.code == 2 and "not a value for priority (INTEGER)" in bad.stderr
    assert run(lab, *CLONE, *antenna.STRUCTURE, "--set", "priority=3").code == 0
    assert by_id(lab.prod_db, "projects")[5] == (5, "project 1", 3)


PG_SCHEMA = """
CREATE TABLE projects (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL);
CREATE TABLE taxa (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE devices (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL,
    project_id bigint REFERENCES projects(id));
CREATE TABLE sites (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL,
    project_id bigint REFERENCES projects(id));
CREATE TABLE deployments (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL,
    project_id bigint NOT NULL REFERENCES projects(id), device_id bigint REFERENCES devices(id),
    site_id bigint REFERENCES sites(id), settings jsonb);
CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, start text NOT NULL,
    deployment_id bigint NOT NULL REFERENCES deployments(id), project_id bigint REFERENCES projects(id));
CREATE TABLE source_images (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, path text NOT NULL,
    deployment_id bigint NOT NULL REFERENCES deployments(id), event_id bigint REFERENCES events(id),
    project_id bigint REFERENCES projects(id));
CREATE TABLE occurrences (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    determination_score double precision, deployment_id bigint NOT NULL REFERENCES deployments(id),
    event_id bigint REFERENCES events(id), taxon_id bigint REFERENCES taxa(id),
    project_id bigint REFERENCES projects(id));
"""


def test_clone_in_postgres_moves_identity_sequences_past_the_new_keys(lab: world_module.World) -> None:
    import pg_world

    tables = list(antenna.TABLES)
    with pg_world.database("antenna") as db:
        pg_world.load(lab.prod_db, db, PG_SCHEMA, tables)
        for table in tables:  # as the application left them: sequences in step with the rows
            pg_world.execute(db, f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
        lab.config.write_text(lab.config.read_text().replace(
            'records = "sqlite:///prod.db"', f'records = "{pg_world.url(db)}"'))
        out = run(lab, *CLONE, *antenna.STRUCTURE, "--set", "name=Template copy")
        assert out.code == 0, out.stderr
        keys = clone_keys(lab, out.json()["run_id"])
        assert keys["projects"] == {1: 5} and set(keys["deployments"].values()) == {36, 37, 38}
        deployments = {r[0]: r for r in pg_world.execute(db, "SELECT id, project_id, device_id, site_id FROM deployments")}
        for old, new in keys["deployments"].items():
            _, _, device, site = deployments[old]
            assert deployments[new] == (new, 5, keys["devices"].get(device, device), keys["sites"].get(site, site))
        # the application's next plain INSERT does not collide with the clones
        assert pg_world.execute(db, "INSERT INTO projects (name) VALUES ('next') RETURNING id") == [(6,)]
        assert pg_world.execute(db, "INSERT INTO deployments (name, project_id) VALUES ('n', 6) RETURNING id") == [(39,)]
