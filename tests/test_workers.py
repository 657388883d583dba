"""Scale-out (DESIGN §8.5): runs planned with --workers and applied by `syncd worker` processes
sharing a Postgres journal, some of them killed (SIGKILL) or hung (SIGSTOP) at random instants.

Every trial is compared with a clean run of the same transfer: the same target rows, the same
entries with the same outcomes. Beyond that, what users of other loaders report must not
happen: no row inserted twice (an AFTER INSERT trigger on every target table counts what
the database really inserted), no entry with two outcomes or none (exactly one EntryApplied
each), and `journal verify` passes.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pg_world
import world as world_module
from conftest import SYNCD, Result, run

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--workers", "--yes", "--json")
VIDEOS = 40
# Groups of 5 roots, each sealed by its own checkpoint: workers apply while planning goes on.
KNOBS = {"SYNCD_CHUNK_ROOTS": "5", "SYNCD_GROUP_RECORDS": "1", "SYNCD_LEASE_SECONDS": "2",
         "SYNCD_FAILPOINT": ""}
TABLES = ("devices", "locations", "vendors", "collectors", "videos", "annotation_runs",
          "segmentations", "video_steps")
# Every row the database inserts, whoever inserts it: a second insert of one key is a duplicate.
COUNT_INSERTS = """
CREATE TABLE inserted (tbl text NOT NULL, id text NOT NULL);
CREATE FUNCTION count_insert() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO inserted VALUES (TG_TABLE_NAME, NEW.id::text); RETURN NULL; END $$;
""" + "".join(f"CREATE TRIGGER {t}_inserted AFTER INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION count_insert();\n"
              for t in TABLES)


@dataclass
class Reference:
    base: world_module.World
    prod: str
    dev_template: str
    snapshot: dict[str, list[tuple[Any, ...]]]
    entries: list[tuple[Any, ...]]


@dataclass
class Trial:
    w: world_module.World
    dev: str
    journal: str

    def start_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([str(SYNCD), "--config", str(self.w.config), "worker"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **KNOBS, **(env or {})})

    def start_transfer(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([str(SYNCD), "--config", str(self.w.config), *TRANSFER],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **KNOBS, **(env or {})})


def fresh(ref: Reference, root: Path) -> Trial:
    root.mkdir(parents=True)
    w = world_module.World.at(root)
    w.config.write_text(ref.base.config.read_text())
    dev = pg_world.create_database("dev", template=ref.dev_template)
    journal = pg_world.create_database("journal")
    pg_world.point_config(w, "prod", ref.prod)
    pg_world.point_config(w, "dev", dev)
    text = w.config.read_text().replace('url = "sqlite:///journal.db"', f'url = "{pg_world.url(journal)}"')
    assert "postgresql" in text.split("[environments")[0]
    w.config.write_text(text)
    return Trial(w, dev, journal)


def drop(trial: Trial) -> None:
    pg_world.drop_database(trial.dev)
    pg_world.drop_database(trial.journal)


def entries_of(w: world_module.World, run_id: str) -> list[tuple[Any, ...]]:
    show = run(w, "show", run_id, "--json").json()
    assert show["status"] == "completed", show["status"]
    return [(e["entity"], e["op"], e["records"], e["state"], e["created"], e["skipped"], e["failed"])
            for e in show["entries"]]


def finish(process: subprocess.Popen[str], timeout: float = 120) -> Result:
    out, err = process.communicate(timeout=timeout)
    return Result(process.returncode, out, err)


def stop_all(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGCONT)
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def duplicates(dev: str) -> list[tuple[Any, ...]]:
    return pg_world.execute(dev, "SELECT tbl, id, count(*) FROM inserted GROUP BY tbl, id HAVING count(*) > 1")


def outcomes_per_entry(w: world_module.World, run_id: str) -> Counter[int]:
    events = [json.loads(line) for line in run(w, "log", "--json").stdout.splitlines()]
    return Counter(e["entry"] for e in events if e["type"] == "EntryApplied" and e["run"] == run_id)


def check(ref: Reference, trial: Trial, transfer: Result) -> str:
    assert transfer.code == 0, transfer.stderr[-2000:]
    run_id = transfer.json()["run_id"]
    assert pg_world.snapshot(trial.dev) == ref.snapshot
    assert entries_of(trial.w, run_id) == ref.entries
    assert duplicates(trial.dev) == []
    assert set(outcomes_per_entry(trial.w, run_id).values()) == {1}
    assert len(outcomes_per_entry(trial.w, run_id)) == len(ref.entries)
    verified = run(trial.w, "journal", "verify")
    assert verified.code == 0, verified.stdout + verified.stderr
    return str(run_id)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    base = world_module.build_world(tmp_path_factory.mktemp("workers") / "base", videos=VIDEOS, files=False)
    prod = pg_world.load_world(base, "prod", extra=False)
    template = pg_world.load_world(base, "dev", extra=False)
    pg_world.execute(template, COUNT_INSERTS)
    ref = Reference(base, prod, template, {}, [])
    trial = fresh(ref, base.root.parent / "clean")
    try:
        worker = trial.start_worker()
        transfer = finish(trial.start_transfer())
        stop_all([worker])
        assert transfer.code == 0, transfer.stderr
        ref.snapshot = pg_world.snapshot(trial.dev)
        ref.entries = entries_of(trial.w, transfer.json()["run_id"])
        assert len(ref.entries) >= 20 and duplicates(trial.dev) == []
        inserted = pg_world.execute(trial.dev, "SELECT count(*) FROM inserted")[0][0]
        assert inserted == sum(e[4] for e in ref.entries) > 300  # the trigger sees every insert
        yield ref
    finally:
        drop(trial)
        pg_world.drop_database(prod)
        pg_world.drop_database(template)


@pytest.mark.parametrize("seed", range(10))
def test_three_workers_one_killed_at_random_instants_equal_a_clean_run(tmp_path, reference, seed):
    """Three workers apply one run while it is planned; one of them, at random, is SIGKILLed
    at a random instant, twice, and a new worker takes its place each time."""
    rng = random.Random(seed)
    trial = fresh(reference, tmp_path / "t")
    workers = [trial.start_worker() for _ in range(3)]
    try:
        transfer = trial.start_transfer()
        for _ in range(2):
            time.sleep(rng.uniform(0.2, 1.5))
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            victim.wait()
            workers.append(trial.start_worker())
        check(reference, trial, finish(transfer))
    finally:
        stop_all(workers)
        drop(trial)


@pytest.mark.parametrize("point", ["apply.before-entry:3", "apply.after-effect:2", "apply.after-outcome:2"])
def test_a_worker_killed_at_each_step_of_an_entry_is_taken_over(tmp_path, reference, point):
    """The only worker kills itself (failpoint) before its third entry, after the effect of its
    second (rows written, outcome not), after the outcome of its second; two workers started
    then take its entry over and finish the run."""
    trial = fresh(reference, tmp_path / "t")
    doomed = trial.start_worker({"SYNCD_FAILPOINT": point})
    workers: list[subprocess.Popen[str]] = []
    try:
        transfer = trial.start_transfer()
        assert doomed.wait(60) == -signal.SIGKILL
        workers = [trial.start_worker() for _ in range(2)]
        check(reference, trial, finish(transfer))
    finally:
        stop_all([doomed, *workers])
        drop(trial)


def test_a_hung_worker_loses_its_lease_and_records_nothing_when_it_wakes(tmp_path, reference):
    """A worker stopped (SIGSTOP) with an entry in hand keeps its database session, so its
    lease is only passed over when it expires; another worker applies the entry and the run
    completes. Woken afterwards, the hung worker writes the entry again (idempotent: no row
    is inserted twice) and its outcome is refused: the entry keeps its one outcome."""
    trial = fresh(reference, tmp_path / "t")
    hung = trial.start_worker({"SYNCD_FAILPOINT": "apply.before-entry:2:stop"})
    workers = [trial.start_worker()]
    try:
        transfer = finish(trial.start_transfer())
        run_id = check(reference, trial, transfer)
        hung.send_signal(signal.SIGCONT)
        hung.send_signal(signal.SIGTERM)
        _, log = hung.communicate(timeout=30)
        assert "lease lost" in log, log
        assert duplicates(trial.dev) == []
        assert set(outcomes_per_entry(trial.w, run_id).values()) == {1}
    finally:
        stop_all([hung, *workers])
        drop(trial)


def test_two_daemons_sharing_jobs_plan_each_due_run_once_and_both_apply(tmp_path, reference, monkeypatch):
    """Two `syncd daemon` processes with the same job on one Postgres journal: the job's due
    run is planned by one of them (the job's advisory lock), applied by the workers inside
    both, and equals a clean transfer; no second run is planned for the same due time."""
    from daemon_support import DaemonProcess, add_job, poll

    for name, value in KNOBS.items():
        monkeypatch.setenv(name, value)
    trial = fresh(reference, tmp_path / "t")
    add_job(trial.w, "mirror", kind="transfer", source="prod", target="dev", every="1h")
    daemons = [DaemonProcess(trial.w) for _ in range(2)]
    try:
        def finished() -> list[Any]:
            runs = run(trial.w, "runs", "--json").json()
            return runs if runs and runs[0]["status"] == "completed" else []
        runs = poll(finished, timeout=120, what="the job's run to complete")
        time.sleep(2)  # the other daemon's next looks at the job: not due again
        assert [r["run_id"] for r in run(trial.w, "runs", "--json").json()] == [runs[0]["run_id"]]
        assert pg_world.snapshot(trial.dev) == reference.snapshot
        assert entries_of(trial.w, runs[0]["run_id"]) == reference.entries
        assert duplicates(trial.dev) == []
        planners = [d for d in daemons if d.messages("run started")]
        assert len(planners) == 1
        show = run(trial.w, "show", runs[0]["run_id"], "--json").json()
        names = {f"{os.uname().nodename}:{d.proc.pid}" for d in daemons}
        assert {e["worker"] for e in show["entries"]} <= names
        listed = run(trial.w, "runs", "--json").json()[0]["workers"]  # which worker applied how many
        assert set(listed) <= names and sum(listed.values()) == len(show["entries"])
        assert show["workers"] == listed
    finally:
        for daemon in daemons:
            assert daemon.stop() == 0, daemon.stderr()[-2000:]
        drop(trial)


# -- bad input: one line, exit 2, nothing written --------------------------------------------------


def test_workers_refused_without_a_shared_journal_or_without_yes(world):
    from conftest import snapshot

    before = snapshot(world)
    assert run(world, "transfer", "--help").code == 0 and "--workers" in run(world, "transfer", "--help").stdout
    no_pg = run(world, "transfer", "-s", "prod", "-t", "dev", "--workers", "--yes")
    assert no_pg.code == 2
    assert no_pg.stderr.strip().splitlines() == [
        'syncd: error: --workers needs a journal that workers share: set [journal] url = '
        '"postgresql://USER@HOST:PORT/DB" in syncd.toml']
    no_yes = run(world, "transfer", "-s", "prod", "-t", "dev", "--workers")
    assert no_yes.code == 2 and "--workers needs --yes or --plan-only" in no_yes.stderr
    clone = run(world, "clone", "-s", "prod", "--entity", "videos", "--workers")
    assert clone.code == 2  # not an option of clone at all
    worker = run(world, "worker", "--once")
    assert worker.code == 2 and "syncd worker needs a shared journal" in worker.stderr
    assert snapshot(world) == before and not (world.root / "journal.db").exists()


def test_an_unreachable_postgres_journal_is_one_line_and_exit_74(world):
    text = world.config.read_text().replace('url = "sqlite:///journal.db"',
                                            'url = "postgresql://postgres@127.0.0.1:1/nowhere"')
    world.config.write_text(text)
    result = run(world, "runs")
    assert result.code == 74, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("syncd: error: journal 127.0.0.1:1/nowhere schema syncd_journal:")


def test_a_journal_password_must_be_a_variable(world):
    text = world.config.read_text().replace('url = "sqlite:///journal.db"',
                                            'url = "postgresql://postgres@127.0.0.1/x"\npassword = "hunter2"')
    world.config.write_text(text)
    result = run(world, "runs")
    assert result.code == 2
    assert "journal.password: write it as \"${VAR}\"" in result.stderr and "hunter2" not in result.stderr


def test_an_entry_waits_for_referenced_entities_itself_when_self_referencing_and_files(world):
    """What the claim is told to wait for, from the world's schema: parents, itself for a
    self-referencing table (folders.parent_id), and the file copies for an entity with blob
    fields (videos.storage_meta.gcs)."""
    import anyio

    from syncd.adapters import load_schema, open_store
    from syncd.config import load_config
    from syncd.worker import dependencies

    config = load_config(str(world.config))

    async def schema() -> Any:
        store = open_store(config, "prod", readonly=True)
        try:
            return await load_schema(config, store)
        finally:
            await store.close()
    depends = dependencies(anyio.run(schema))
    assert depends["locations"] == []
    assert sorted(depends["videos"]) == sorted(["collectors", "devices", "locations", "vendors", "files"])
    assert depends["annotation_runs"] == ["videos"]


def test_a_self_referencing_entity_waits_for_its_own_earlier_entries(tmp_path):
    import sqlite3

    import anyio

    from syncd.schema import build_schema
    from syncd.stores.sqlite import SqliteStore
    from syncd.worker import dependencies

    db = tmp_path / "tree.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE folders (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES folders(id))")

    async def describe() -> Any:
        store = SqliteStore("tree", db, readonly=True)
        try:
            return await store.describe()
        finally:
            await store.close()
    assert dependencies(build_schema(anyio.run(describe), {})) == {"folders": ["folders"]}


def test_files_and_an_sqlite_target_through_workers_equal_an_in_process_transfer(tmp_path, monkeypatch):
    """Workers copy the files too, before the records that point at them, into an SQLite
    target, two workers at once: the same rows and the same files as a transfer applied
    in-process."""
    from conftest import snapshot

    for name, value in KNOBS.items():
        monkeypatch.setenv(name, value)
    clean = world_module.build_world(tmp_path / "clean", videos=12)
    assert run(clean, "transfer", "-s", "prod", "-t", "dev", "--copy-files", "--yes").code == 0
    w = world_module.build_world(tmp_path / "w", videos=12)
    journal = pg_world.create_database("journal")
    try:
        w.config.write_text(w.config.read_text().replace('url = "sqlite:///journal.db"',
                                                         f'url = "{pg_world.url(journal)}"'))
        trial = Trial(w, "", journal)
        workers = [trial.start_worker() for _ in range(2)]
        try:
            done = run(w, "transfer", "-s", "prod", "-t", "dev", "--copy-files", "--workers", "--yes")
            assert done.code == 0, done.stderr[-3000:]
        finally:
            stop_all(workers)
        assert snapshot(w) == snapshot(clean)
        files = sorted(p.relative_to(w.dev_files) for p in w.dev_files.rglob("*") if p.is_file())
        assert files and files == sorted(p.relative_to(clean.dev_files)
                                         for p in clean.dev_files.rglob("*") if p.is_file())
    finally:
        pg_world.drop_database(journal)


@pytest.mark.parametrize("point", ["plan.after-checkpoint:2", "plan.after-append:3"])
def test_the_planner_killed_while_workers_apply_then_resumed_equals_a_clean_run(tmp_path, reference, point):
    """The planning process is killed (after its second checkpoint, or between two) while
    three workers apply what it sealed; `syncd resume RUN` plans on from the last checkpoint
    and waits for the workers, who finish the run."""
    trial = fresh(reference, tmp_path / "t")
    workers = [trial.start_worker() for _ in range(3)]
    try:
        assert finish(trial.start_transfer({"SYNCD_FAILPOINT": point})).code == -signal.SIGKILL
        runs = run(trial.w, "runs", "--json").json()
        assert len(runs) == 1 and runs[0]["status"] != "completed"
        resumed = subprocess.run([str(SYNCD), "--config", str(trial.w.config), "resume",
                                  runs[0]["run_id"], "--yes", "--json"],
                                 capture_output=True, text=True, timeout=120, env={**os.environ, **KNOBS})
        check(reference, trial, Result(resumed.returncode, resumed.stdout, resumed.stderr))
    finally:
        stop_all(workers)
        drop(trial)


def test_a_lease_time_that_is_not_a_positive_number_is_refused(world, monkeypatch):
    from syncd.errors import InputError
    from syncd.worker import lease_seconds

    for bad in ("abc", "0", "-3", "nan"):
        monkeypatch.setenv("SYNCD_LEASE_SECONDS", bad)
        with pytest.raises(InputError, match="SYNCD_LEASE_SECONDS"):
            lease_seconds()
    monkeypatch.setenv("SYNCD_LEASE_SECONDS", "2.5")
    assert lease_seconds() == 2.5


def test_a_run_cancelled_while_workers_apply_it_stops_them_and_its_waiter_exits_1(tmp_path, reference):
    """`syncd cancel` while a worker holds an entry (stopped there) and `resume` waits for the
    workers: the woken worker's outcome is refused and it goes on running; the waiting
    command exits 1 saying the run was cancelled; no more of the run is applied."""
    trial = fresh(reference, tmp_path / "t")
    worker = None
    try:
        planned = finish(subprocess.Popen([str(SYNCD), "--config", str(trial.w.config), *TRANSFER, "--plan-only"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env={**os.environ, **KNOBS}))
        assert planned.code == 0, planned.stderr
        run_id = planned.json()["run_id"]
        worker = trial.start_worker({"SYNCD_FAILPOINT": "apply.before-entry:2:stop"})
        deadline = time.monotonic() + 60
        while "T (stopped)" not in Path(f"/proc/{worker.pid}/status").read_text():
            assert time.monotonic() < deadline, "the worker never reached its second entry"
            time.sleep(0.05)
        waiter = subprocess.Popen([str(SYNCD), "--config", str(trial.w.config), "resume", run_id, "--yes"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **KNOBS})
        time.sleep(2)  # started and waiting (a run cancelled first could not be resumed at all)
        assert run(trial.w, "cancel", run_id).code == 0
        waited = finish(waiter)
        assert waited.code == 1 and f"Run {run_id} was cancelled" in waited.stderr, waited.stderr
        worker.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        assert worker.poll() is None  # refused, logged, and still working
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=30)
        assert "outcome refused by the journal" in log, log
        show = run(trial.w, "show", run_id, "--json").json()
        assert show["status"] == "cancelled"
        assert [e["state"] for e in show["entries"]][:2] == ["done", "pending"]
        assert {e["state"] for e in show["entries"][2:]} == {"pending"}
        assert run(trial.w, "journal", "verify").code == 0
    finally:
        if worker is not None:
            stop_all([worker])
        drop(trial)
