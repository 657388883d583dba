"""`json_columns = [...]`: a column the database declares TEXT (as most ORMs do) can be
marked as holding JSON, so dot paths in filters and references reach into it."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from syncd.cli import cli


def world(base: Path, json_columns: str) -> Path:
    for name in ("prod.db", "dev.db"):
        with sqlite3.connect(base / name) as conn:
            conn.executescript("""
                CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);
                CREATE TABLE books (id INTEGER PRIMARY KEY, meta TEXT);""")
    with sqlite3.connect(base / "prod.db") as conn:
        conn.executemany("INSERT INTO authors VALUES (?, ?)", [(1, "Ada"), (2, "Bo")])
        conn.executemany("INSERT INTO books VALUES (?, ?)", [
            (10, '{"lang": "en", "author_id": 1}'), (11, '{"lang": "fr", "author_id": 2}')])
    config = base / "syncd.toml"
    config.write_text(f"""
[environments.prod]
records = "sqlite:///prod.db"
[environments.dev]
records = "sqlite:///dev.db"
[entities.books]
references = {{ "meta.author_id" = "authors" }}
{json_columns}
""")
    return config


def copy(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), "copy", "-s", "prod", "-t", "dev",
                                      "--entity", "books", "--yes", *args])
    return result.exit_code, result.stderr


def test_without_json_columns_a_text_column_is_not_reached_into(tmp_path: Path) -> None:
    code, stderr = copy(world(tmp_path, ""))
    assert code == 2
    assert "meta" in stderr and "JSON" in stderr  # the reference needs a JSON column


def test_json_columns_lets_dot_paths_reach_into_text(tmp_path: Path) -> None:
    config = world(tmp_path, 'json_columns = ["meta"]')
    code, stderr = copy(config, "-f", "meta.lang:eq:fr")
    assert code == 0, stderr
    with sqlite3.connect(tmp_path / "dev.db") as conn:
        assert conn.execute("SELECT id FROM books").fetchall() == [(11,)]
        assert conn.execute("SELECT id, name FROM authors").fetchall() == [(2, "Bo")]  # the JSON reference


def test_an_unknown_json_column_is_a_config_error(tmp_path: Path) -> None:
    code, stderr = copy(world(tmp_path, 'json_columns = ["metadata"]'))
    assert code == 2
    assert stderr.strip().splitlines() == [
        "syncd: error: entities.books.json_columns: unknown column 'metadata' on entity 'books'"]
