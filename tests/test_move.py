"""syncd move on an Antenna-like world (tests/antenna_world.py): re-scoping deployments and
everything below them, shared parents cloned, exclusive ones reassigned, global ones left
alone, ONE transaction with checks before the commit, journaled with before-images."""
from __future__ import annotations

import hashlib
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import antenna_world as antenna
import world as world_module
from conftest import run, run_process

MOVE = ("move", "-e", "lab", "--entity", "deployments", "--yes", "--json")


@pytest.fixture
def lab(tmp_path: Path) -> world_module.World:
    return antenna.build(tmp_path / "lab")


def digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


def by_id(db: Path, table: str) -> dict[Any, tuple[Any, ...]]:
    return {r[0]: r for r in antenna.rows(db, table)}


def scope_counts(db: Path) -> dict[str, dict[Any, int]]:
    out: dict[str, dict[Any, int]] = {}
    for table in ("devices", "sites", "deployments", "events", "source_images", "occurrences"):
        with sqlite3.connect(db) as conn:
            out[table] = dict(conn.execute(f"SELECT project_id, COUNT(*) FROM {table} GROUP BY 1").fetchall())
        conn.close()
    return out


def test_move_two_deployments_to_an_existing_project(lab: world_module.World) -> None:
    before = antenna.snapshot(lab.prod_db)
    counts_before = scope_counts(lab.prod_db)
    out = run(lab, *MOVE, "-f", "id:in:[31,32]", "--to", "projects:4")
    assert out.code == 0, out.stderr
    plan = out.json()["plan"]["move"]
    assert (plan["from"], plan["to"]) == (1, 4)
    deployments, devices, sites = (by_id(lab.prod_db, t) for t in ("deployments", "devices", "sites"))
    # d2 used device 11, shared with project 2's d4: cloned; site 20, also used by d1 staying: cloned
    (device_clone,) = [k for k in devices if k not in dict.fromkeys(r[0] for r in before["devices"])]
    (site_clone,) = [k for k in sites if k not in dict.fromkeys(r[0] for r in before["sites"])]
    assert devices[device_clone][1:] == ("shared", 4) and sites[site_clone][1:] == ("own", 4)
    assert deployments[31][2:5] == (4, device_clone, site_clone)
    assert deployments[32][2:5] == (4, 13, 22)  # a global device and site are left alone
    for table in ("events", "source_images", "occurrences"):  # everything below moved too
        for row in antenna.rows(lab.prod_db, table):
            deployment = row[antenna_deployment_at(table)]
            assert (row[-1] == 4) == (deployment in (31, 32)), (table, row)
    # the records that stayed are as they were; per scope, counts are conserved (plus clones)
    for table in ("taxa", "projects", "devices", "sites"):
        assert set(before[table]) <= set(antenna.rows(lab.prod_db, table)), table
    stayed = [r for r in before["deployments"] if r[0] not in (31, 32)]
    assert [deployments[r[0]] for r in stayed] == stayed
    after = scope_counts(lab.prod_db)
    for table, counts in counts_before.items():
        extra = 1 if table in ("devices", "sites") else 0
        assert sum(after[table].values()) == sum(counts.values()) + extra, table
    assert after["deployments"] == {1: 1, 2: 2, 3: 1, 4: 2}


def antenna_deployment_at(table: str) -> int:
    return {"events": 2, "source_images": 2, "occurrences": 2}[table]


def test_move_to_a_new_project_creates_it_first(lab: world_module.World) -> None:
    out = run(lab, *MOVE, "-f", "id:eq:33", "--to", "projects:new", "--set", "name=Nunavik")
    assert out.code == 0, out.stderr
    assert by_id(lab.prod_db, "projects")[5] == (5, "Nunavik")
    d4 = by_id(lab.prod_db, "deployments")[33]
    assert d4[2] == 5 and d4[3] == 11  # device 11 belongs to project 1, not the old scope: left
    sites = by_id(lab.prod_db, "sites")
    assert sites[d4[4]][1:] == ("p2", 5)  # site 21 also serves d5, which stays: cloned
    assert sites[21] == (21, "p2", 2)


def test_an_exclusive_parent_is_reassigned(lab: world_module.World) -> None:
    out = run(lab, *MOVE, "-f", "id:eq:34", "--to", "projects:3").json()
    assert out["status"] == "completed"
    # device 12 is project 2's and only d5 uses it: reassigned, not cloned
    assert by_id(lab.prod_db, "devices")[12] == (12, "p2", 3)
    assert out["plan"]["move"]["entities"]["devices"] == {
        "old_before": 1, "old_after": 0, "new_before": 0, "new_after": 1, "moved": 0,
        "cloned": 0, "reassigned": 1}


def test_dry_run_writes_nothing_and_plans_what_the_move_does(lab: world_module.World) -> None:
    before = digest(lab.prod_db)
    dry = run(lab, *MOVE, "-f", "id:in:[31,32]", "--to", "projects:4", "--dry-run")
    assert dry.code == 0 and digest(lab.prod_db) == before
    real = run(lab, *MOVE, "-f", "id:in:[31,32]", "--to", "projects:4")
    assert dry.json()["plan"] == real.json()["plan"]


def test_a_move_failing_mid_transaction_leaves_the_environment_as_it_was(lab: world_module.World) -> None:
    with sqlite3.connect(lab.prod_db) as conn:
        conn.execute("CREATE TRIGGER no_move BEFORE UPDATE ON events WHEN NEW.id = 104 "
                     "BEGIN SELECT RAISE(ABORT, 'rejected by policy'); END")
    conn.close()
    before = digest(lab.prod_db)
    result = run(lab, *MOVE, "-f", "id:in:[31,32]", "--to", "projects:4")
    assert result.code == 1
    assert digest(lab.prod_db) == before  # byte-identical: one transaction, rolled back
    out = result.json()
    assert out["status"] == "failed" and "rolled back, nothing of the move was written" in out["error"]
    assert "rejected by policy" in out["error"]
    shown = run(lab, "show", out["run_id"], "--json").json()
    assert {e["state"] for e in shown["entries"]} == {"failed"}
    assert sum(e["created"] + e["updated"] for e in shown["entries"]) == 0


def test_a_check_failing_before_the_commit_rolls_everything_back(lab: world_module.World) -> None:
    planned = run(lab, *MOVE, "-f", "id:in:[31,32]", "--to", "projects:4", "--plan-only").json()["run_id"]
    with sqlite3.connect(lab.prod_db) as conn:  # meanwhile, someone adds an event to project 4
        conn.execute("INSERT INTO events VALUES (999, '2026-01-01', 35, 4)")
    conn.close()
    before = digest(lab.prod_db)
    result = run(lab, "resume", planned, "--yes", "--json")
    assert result.code == 1 and digest(lab.prod_db) == before
    assert "check failed: events with project_id = 4: 7, planned 6" in result.json()["error"]


def test_a_killed_move_resumes_to_the_planned_result(lab: world_module.World, tmp_path: Path) -> None:
    clean = antenna.build(tmp_path / "clean")
    assert run(clean, *MOVE, "-f", "id:in:[31,32]", "--to", "projects:4").code == 0
    for point in ("store.before-commit:1", "apply.after-effect:1"):  # before and after the commit
        w = antenna.build(tmp_path / point.replace(":", "-"))
        killed = run_process(w, *MOVE, "-f", "id:in:[31,32]", "--to", "projects:4",
                             env={"SYNCD_FAILPOINT": point})
        assert killed.code == -signal.SIGKILL, killed.stderr
        run_id = run(w, "runs", "--json").json()[0]["run_id"]
        assert run(w, "resume", run_id, "--yes").code == 0
        assert antenna.snapshot(w.prod_db) == antenna.snapshot(clean.prod_db), point
        assert run(w, "journal", "verify").code == 0


def test_update_entries_carry_before_images(lab: world_module.World) -> None:
    out = run(lab, *MOVE, "-f", "id:eq:32", "--to", "projects:4").json()
    from journal import open_journal
    from syncd.payload import unpack_rows

    with open_journal(lab.root / "journal.db") as journal:
        rows = [r for e in journal.entries(out["run_id"]) if e.entity == "deployments" and e.op == "update"
                for r in unpack_rows(journal.planned(out["run_id"], e.entry).payload)]
    assert rows == [[32, {"project_id": 4}, {"project_id": 1}]]


@pytest.mark.parametrize(("args", "message"), [
    (("-f", "id:eq:31", "--to", "nope:1"), "unknown entity 'nope'"),
    (("-f", "id:eq:31", "--to", "taxa:1"), "'deployments' does not reference 'taxa'"),
    (("-f", "id:eq:31", "--to", "projects:1"), "the selection is already in projects 1"),
    (("-f", "id:eq:31", "--to", "projects:77"), "no projects 77 in lab"),
    (("-f", "id:in:[31,33]", "--to", "projects:4"), "the selection spans several scopes (1, 2)"),
    (("-f", "id:eq:31", "--to", "projects:new", "--set", "colour=red"), "unknown field 'colour' on entity 'projects'"),
    (("-f", "id:eq:31", "--to", "projects:4", "--set", "name=x"), "only a new scope"),
    (("-f", "id:eq:31", "--to", "projects"), "expected SCOPE_ENTITY:KEY"),
])
def test_bad_move_input_is_one_line_exit_2_and_nothing_written(
        lab: world_module.World, args: tuple[str, ...], message: str) -> None:
    assert run(lab, *MOVE, "-f", "id:eq:31", "--to", "projects:4", "--dry-run").code == 0
    before = digest(lab.prod_db)
    result = run(lab, *MOVE, *args)
    assert result.code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert digest(lab.prod_db) == before and not (lab.root / "journal.db").exists()


def test_move_in_postgres_is_one_transaction_too(lab: world_module.World) -> None:
    import pg_world
    from test_clone import PG_SCHEMA

    with pg_world.database("antenna") as db:
        pg_world.load(lab.prod_db, db, PG_SCHEMA, list(antenna.TABLES))
        lab.config.write_text(lab.config.read_text().replace(
            'records = "sqlite:///prod.db"', f'records = "{pg_world.url(db)}"'))
        pg_world.execute(db, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                             "$$ BEGIN IF NEW.id = 104 THEN RAISE EXCEPTION 'rejected by policy'; END IF; "
                             "RETURN NEW; END $$")
        pg_world.execute(db, "CREATE TRIGGER no_move BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION refuse()")
        before = pg_world.snapshot(db)
        failed = run(lab, *MOVE, "-f", "id:in:[31,32]", "--to", "projects:4")
        assert failed.code == 1 and "rejected by policy" in failed.json()["error"], failed.stdout
        assert pg_world.snapshot(db) == before, failed.stdout  # rolled back, clones included
        pg_world.execute(db, "DROP TRIGGER no_move ON events")
        assert run(lab, "resume", failed.json()["run_id"], "--yes").code == 0
        deployments = {r[0]: r for r in pg_world.execute(db, "SELECT id, project_id, device_id FROM deployments")}
        devices = {r[0]: r for r in pg_world.execute(db, "SELECT id, name, project_id FROM devices")}
        assert deployments[31][1] == 4 and devices[deployments[31][2]][1:] == ("shared", 4)
        assert pg_world.execute(db, "SELECT count(*) FROM occurrences WHERE project_id = 4") == [(12,)]
