"""An Antenna-like world (the schema of `../shared/seeds/003_…`, reduced): projects; devices and
sites with a nullable project_id, some shared between deployments, some global; deployments;
events, source images and occurrences below deployments, each with project_id; global taxa.
Integer keys throughout, as Django makes them.

The environment `lab` is `prod.db`; `other` is `dev.db`, the same tables and no rows.
"""
from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import world as world_module

SCHEMA = """
CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE taxa (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
    project_id INTEGER REFERENCES projects(id));
CREATE TABLE sites (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
    project_id INTEGER REFERENCES projects(id));
CREATE TABLE deployments (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    device_id INTEGER REFERENCES devices(id), site_id INTEGER REFERENCES sites(id),
    settings JSON);
CREATE TABLE events (id INTEGER PRIMARY KEY, start TEXT NOT NULL,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id),
    project_id INTEGER REFERENCES projects(id));
CREATE TABLE source_images (id INTEGER PRIMARY KEY, path TEXT NOT NULL,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id),
    event_id INTEGER REFERENCES events(id), project_id INTEGER REFERENCES projects(id));
CREATE TABLE occurrences (id INTEGER PRIMARY KEY, determination_score REAL,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id),
    event_id INTEGER REFERENCES events(id), taxon_id INTEGER REFERENCES taxa(id),
    project_id INTEGER REFERENCES projects(id));
"""

CONFIG = """[journal]
url = "sqlite:///journal.db"

[environments.lab]
records = "sqlite:///prod.db"

[environments.other]
records = "sqlite:///dev.db"

[entities.projects]
children = ["deployments", "devices", "sites"]

[entities.deployments]
children = ["events", "source_images", "occurrences"]

[entities.taxa]
natural_key = ["name"]
"""

STRUCTURE = ("--include", "deployments", "--include", "devices", "--include", "sites")
TABLES = ("projects", "taxa", "devices", "sites", "deployments", "events", "source_images",
          "occurrences")


def build(root: Path, seed: int = 3) -> world_module.World:
    """Four projects; project 1 has three deployments: one on its own device and site, one on
    a device it shares with project 2's deployment, one on a global site (no project)."""
    w = world_module.World.at(root)
    root.mkdir(parents=True)
    w.config.write_text(CONFIG)
    rnd = random.Random(seed)
    for db in (w.prod_db, w.dev_db):
        with sqlite3.connect(db) as conn:
            conn.executescript(SCHEMA)
        conn.close()
    with sqlite3.connect(w.prod_db) as conn:
        conn.executemany("INSERT INTO projects VALUES (?, ?)", [(p, f"project {p}") for p in (1, 2, 3, 4)])
        conn.executemany("INSERT INTO taxa VALUES (?, ?)", [(t, f"taxon {t}") for t in range(1, 6)])
        conn.executemany("INSERT INTO devices VALUES (?, ?, ?)",
                         [(10, "own", 1), (11, "shared", 1), (12, "p2", 2), (13, "global", None)])
        conn.executemany("INSERT INTO sites VALUES (?, ?, ?)",
                         [(20, "own", 1), (21, "p2", 2), (22, "global", None)])
        conn.executemany("INSERT INTO deployments VALUES (?, ?, ?, ?, ?, ?)", [
            (30, "d1", 1, 10, 20, '{"interval": 10}'), (31, "d2", 1, 11, 20, None),
            (32, "d3", 1, 13, 22, '{"interval": 5}'), (33, "d4", 2, 11, 21, None),
            (34, "d5", 2, 12, 21, None), (35, "d6", 3, 13, 22, None)])
        event, image, occurrence = 100, 1000, 5000
        for deployment, project in ((30, 1), (31, 1), (32, 1), (33, 2), (34, 2), (35, 3)):
            for _ in range(3):
                conn.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                             (event, f"2026-0{rnd.randint(1, 9)}-01", deployment, project))
                for _ in range(2):
                    conn.execute("INSERT INTO source_images VALUES (?, ?, ?, ?, ?)",
                                 (image, f"img/{image}.jpg", deployment, event, project))
                    conn.execute("INSERT INTO occurrences VALUES (?, ?, ?, ?, ?, ?)",
                                 (occurrence, round(rnd.random(), 3), deployment, event,
                                  rnd.randint(1, 5), project))
                    image, occurrence = image + 1, occurrence + 1
                event += 1
    conn.close()
    return w


def rows(db: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        found = conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    conn.close()
    return found


def snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    return {t: rows(db, t) for t in TABLES}
