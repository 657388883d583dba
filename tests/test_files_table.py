"""A user table named `files` is an entity like any other: its rows are counted as records,
and file copies (told apart by their op, not by that name) are counted as files."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from syncd.cli import cli

SCHEMA = """
CREATE TABLE folders (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE files (id TEXT PRIMARY KEY, folder_id TEXT REFERENCES folders(id), uri TEXT);
"""


def build(base: Path, count: int) -> Path:
    (base / "prod-files").mkdir(parents=True)
    (base / "dev-files").mkdir()
    for name in ("prod.db", "dev.db"):
        with sqlite3.connect(base / name) as conn:
            conn.executescript(SCHEMA)
    with sqlite3.connect(base / "prod.db") as conn:
        conn.execute("INSERT INTO folders VALUES ('f1', 'reports')")
        for i in range(count):
            blob = base / "prod-files" / f"r{i}.txt"
            blob.write_text(f"report {i}")
            conn.execute("INSERT INTO files VALUES (?, 'f1', ?)", (f"r{i}", blob.as_uri()))
    config = base / "syncd.toml"
    config.write_text(f"""
[environments.prod]
records = "sqlite:///prod.db"
[environments.dev]
records = "sqlite:///dev.db"
blob_map = {{ "{(base / 'prod-files').as_uri()}/" = "{(base / 'dev-files').as_uri()}/" }}
[entities.folders]
children = ["files"]
[entities.files]
blob_fields = ["uri"]
""")
    return config


def test_a_table_named_files_is_counted_as_records(tmp_path: Path) -> None:
    config = build(tmp_path, 3)
    result = CliRunner().invoke(cli, ["--config", str(config), "transfer", "-s", "prod", "-t", "dev",
                                      "--copy-files", "--yes", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["applied"]["entities"]["files"]["created"] == 3
    assert report["applied"]["entities"]["folders"]["created"] == 1
    assert report["applied"]["files"] == {"copied": 3, "skipped": 0, "failed": 0}
    with sqlite3.connect(tmp_path / "dev.db") as conn:
        uris = [u for (u,) in conn.execute("SELECT uri FROM files ORDER BY id")]
    assert uris == [(tmp_path / "dev-files" / f"r{i}.txt").as_uri() for i in range(3)]
    assert (tmp_path / "dev-files" / "r2.txt").read_text() == "report 2"
