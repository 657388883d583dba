"""Invariant 2 for archives: a real `syncd import` and `syncd restore` process killed (SIGKILL
at a failpoint) at many points, then resumed, leaves the target exactly as an uninterrupted
run does, and the journal verifies."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
import pytest

import archive_world as aw
import world as world_module
from conftest import run, run_process

GROUP = {"SYNCD_GROUP_RECORDS": "40"}  # plans span several durable appends

IMPORT_POINTS: list[tuple[str, int | str]] = [
    ("plan.after-append", 1), ("plan.after-append", 2), ("plan.after-append", "last"),
    ("apply.before-entry", 1), ("apply.before-entry", 3),
    ("apply.after-effect", 1), ("apply.after-effect", 2), ("apply.after-effect", 4),
    ("apply.after-effect", "last"), ("apply.after-outcome", 2), ("store.before-commit", 1),
    ("file.after-copy", 1), ("file.before-rename", 3),
]
RESTORE_POINTS: list[tuple[str, int | str]] = [
    ("plan.after-append", 1), ("plan.after-append", "last"),
    ("apply.before-entry", 1), ("apply.before-entry", 2),
    ("apply.after-effect", 1), ("apply.after-effect", 2), ("apply.after-effect", "last"),
    ("apply.after-outcome", 1), ("store.before-commit", 1), ("store.before-commit", 2),
]


class Setup:
    def __init__(self, root: Path) -> None:
        self.w = world_module.build_world(root, videos=15)
        self.archive = root / "prod.zip"
        result = run(self.w, "export", "-s", "prod", "-o", str(self.archive), "--entity", "videos",
                     "--with-files", "--yes")
        assert result.code == 0, result.stderr
        self.envs = 0

    def env(self, db: Path | None = None) -> str:
        """A new environment: empty, or a copy of `db`."""
        self.envs += 1
        name = f"e{self.envs}"
        path = aw.add_empty_env(self.w, name)
        if db is not None:
            shutil.copy(db, path)
        return name

    def db(self, env: str) -> Path:
        return self.w.root / f"{env}.db"

    def records(self, env: str) -> str:
        """The environment's tables as text, its files folder's name made neutral."""
        return repr(aw.tables(self.db(env))).replace(f"/{env}_files/", "/ENV_files/")

    def files(self, env: str) -> dict[str, str]:
        return world_module.file_tree(self.w.root / f"{env}_files")


def hits(setup: Setup, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each failpoint is reached by an uninterrupted run of `args`."""
    from syncd import failpoints, journaling

    counted: dict[str, int] = {}
    monkeypatch.setattr(failpoints, "hit", lambda name: counted.__setitem__(name, counted.get(name, 0) + 1))
    monkeypatch.setattr(journaling, "GROUP_RECORDS", int(GROUP["SYNCD_GROUP_RECORDS"]))
    result = run(setup.w, *args)
    monkeypatch.undo()
    assert result.code == 0, result.stderr
    return counted


def kill_and_resume(setup: Setup, env: str, args: tuple[str, ...], point: str, n: int) -> None:
    killed = run_process(setup.w, *args, env={**GROUP, "SYNCD_FAILPOINT": f"{point}:{n}"})
    assert killed.code == -9, (point, n, killed.code, killed.stderr)
    runs = [r for r in run(setup.w, "runs", "--json").json() if r["target"] == env]
    if not runs:  # killed before the run was durable: nothing journaled, run it again
        again = run_process(setup.w, *args)
        assert again.code == 0, again.stderr
        return
    assert len(runs) == 1, runs
    resumed = run_process(setup.w, "resume", runs[0]["run_id"], "--yes")
    assert resumed.code == 0, (point, n, resumed.stderr)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("archive-crash") / "w")


def test_import_killed_anywhere_then_resumed_equals_a_clean_import(setup: Setup, monkeypatch) -> None:
    reference = setup.env()
    args = lambda env: ("import", str(setup.archive), "-t", env, "--copy-files", "--yes")  # noqa: E731
    counted = hits(setup, args(reference), monkeypatch)
    expected, expected_files = setup.records(reference), setup.files(reference)
    assert sum(len(r) for r in aw.tables(setup.db(reference)).values()) > 50 and len(expected_files) > 20
    for point, n in IMPORT_POINTS:
        nth = counted[point] if n == "last" else n
        assert nth <= counted[point], (point, counted)
        env = setup.env()
        kill_and_resume(setup, env, args(env), point, nth)
        assert setup.records(env) == expected, (point, n)
        assert setup.files(env) == expected_files, (point, n)
    assert run(setup.w, "journal", "verify").code == 0


def _changed_target(setup: Setup) -> Path:
    """A target that differs from the archive every way: records updated, deleted, and extra."""
    env = setup.env()
    assert run(setup.w, "import", str(setup.archive), "-t", env, "--yes").code == 0
    db = setup.db(env)
    videos = [r[0] for r in aw.rows(db, "videos")]
    aw.execute(db, "UPDATE videos SET title = 'changed' WHERE id <> ?", videos[0])
    aw.execute(db, "DELETE FROM video_steps")
    aw.execute(db, "DELETE FROM segmentations WHERE annotation_run_id IN "
               "(SELECT id FROM annotation_runs WHERE video_id = ?)", videos[1])
    aw.execute(db, "INSERT INTO locations VALUES ('extra-location', 'Nowhere', 'XX')")
    aw.execute(db, "INSERT INTO vendors VALUES ('extra-vendor', 'Nobody')")
    return db


def test_restore_killed_anywhere_then_resumed_equals_a_clean_restore(setup: Setup, monkeypatch) -> None:
    changed = _changed_target(setup)
    reference = setup.env(changed)
    args = lambda env: ("restore", str(setup.archive), "-t", env, "--no-backup", "--yes")  # noqa: E731
    counted = hits(setup, args(reference), monkeypatch)
    expected = aw.tables(setup.db(reference))
    assert expected != aw.tables(changed)
    assert "extra-location" not in {r[0] for r in expected["locations"]}
    for point, n in RESTORE_POINTS:
        nth = counted[point] if n == "last" else n
        assert nth <= counted[point], (point, counted)
        env = setup.env(changed)
        kill_and_resume(setup, env, args(env), point, nth)
        assert aw.tables(setup.db(env)) == expected, (point, n)
    assert run(setup.w, "journal", "verify").code == 0



EXPORT_POINTS = [("plan.after-append", 1), ("apply.after-effect", 2), ("export.after-zip", 1)]


def _records(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if n.startswith("records/")}


def test_export_killed_then_resumed_writes_the_archive_a_clean_export_writes(setup: Setup) -> None:
    args = lambda out: ("export", "-s", "prod", "-o", str(out), "--entity", "videos", "--yes")  # noqa: E731
    clean = setup.w.root / "clean.zip"
    assert run(setup.w, *args(clean)).code == 0
    for i, (point, n) in enumerate(EXPORT_POINTS):
        out = setup.w.root / f"killed{i}.zip"
        killed = run_process(setup.w, *args(out), env={**GROUP, "SYNCD_FAILPOINT": f"{point}:{n}"})
        assert killed.code == -9, (point, killed.stderr)
        target = "archive:" + str(out)
        runs = [r for r in run(setup.w, "runs", "--json").json() if r["target"] == target]
        assert len(runs) == 1, (point, runs)
        resumed = run_process(setup.w, "resume", runs[0]["run_id"], "--yes")
        assert resumed.code == 0, (point, resumed.stderr)
        assert _records(out) == _records(clean), point
        assert run(setup.w, "archive", "verify", str(out)).code == 0
        assert not out.with_name(out.name + ".staging.db").exists()
        shown = run(setup.w, "show", runs[0]["run_id"], "--json").json()
        assert shown["archive"]["sha256"] == shown["plan"]["archive"]["sha256"], point
