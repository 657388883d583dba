"""Helpers for the archive tests: the grace-like world (scripts/world.py) plus empty
environments of the same schema, and a small world with integer keys for --new-ids."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import world as world_module


def add_empty_env(w: world_module.World, name: str) -> Path:
    """An environment `name` with prod's schema and no records; its files go to <name>_files/."""
    db = w.root / f"{name}.db"
    conn = sqlite3.connect(db)
    conn.executescript(world_module.SCHEMA)
    conn.close()
    files = w.root / f"{name}_files"
    files.mkdir(exist_ok=True)
    prod_uri = w.prod_files.as_uri() + "/"
    text = w.config.read_text()
    section = (f'\n[environments.{name}]\nrecords = "sqlite:///{name}.db"\n'
               f"blob_map = {{ {json.dumps(prod_uri)} = {json.dumps(files.as_uri() + '/')} }}\n")
    head, sep, tail = text.partition("\n[entities.")
    w.config.write_text(head + section + sep + tail)
    return db


def rows(db: Path, table: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
    finally:
        conn.close()


def tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {t: rows(db, t) for t in world_module.TABLES}


def execute(db: Path, sql: str, *params: Any) -> None:
    conn = sqlite3.connect(db)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


INT_SCHEMA = """
CREATE TABLE orgs (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, org_id INTEGER REFERENCES orgs(id), name TEXT,
                    parent_id INTEGER REFERENCES items(id));
"""


def int_world(root: Path, envs: dict[str, int]) -> Path:
    """SQLite environments with integer keys 1..n (so two of them collide), and a config."""
    root.mkdir(parents=True)
    config = ['[journal]\nurl = "sqlite:///journal.db"\n']
    for name, n in envs.items():
        conn = sqlite3.connect(root / f"{name}.db")
        conn.executescript(INT_SCHEMA)
        conn.executemany("INSERT INTO orgs VALUES (?, ?)", [(i, f"{name}-org{i}") for i in range(1, 3)])
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?)",
                         [(i, 1 + i % 2, f"{name}-item{i}", i - 1 if i > 1 else None) for i in range(1, n + 1)])
        conn.commit()
        conn.close()
        config.append(f'[environments.{name}]\nrecords = "sqlite:///{name}.db"\n')
    (root / "syncd.toml").write_text("\n".join(config))
    return root / "syncd.toml"
