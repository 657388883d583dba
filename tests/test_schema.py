"""The entity graph, built from real SQLite files."""
from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from syncd.config import EntityConfig
from syncd.errors import SchemaError
from syncd.schema import Column, FieldPath, Reference, Schema, TableInfo, build_schema, get_in, set_in
from syncd.stores.sqlite_describe import describe

GRACE = """
CREATE TABLE devices (id TEXT PRIMARY KEY, device_no TEXT NOT NULL UNIQUE);
CREATE TABLE locations (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE vendors (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE collectors (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE videos (
    id TEXT PRIMARY KEY,
    title TEXT,
    location_id TEXT REFERENCES locations(id),
    vendor_id TEXT REFERENCES vendors(id),
    collection_meta JSON,
    storage_meta jsonb,
    created_at TEXT,
    updated_at TEXT
);
CREATE TABLE annotation_runs (id TEXT PRIMARY KEY, video_id TEXT NOT NULL REFERENCES videos(id));
CREATE TABLE segmentations (
    id TEXT PRIMARY KEY,
    video_id TEXT REFERENCES videos(id),
    annotation_run_id TEXT REFERENCES annotation_runs(id)
);
CREATE TABLE video_steps (
    id INTEGER PRIMARY KEY,
    video_id TEXT NOT NULL REFERENCES videos,
    result_ref TEXT,
    debug_ref TEXT
);
CREATE TABLE audit_log (at TEXT, message TEXT);
"""

GRACE_CONFIG = {
    "devices": EntityConfig(natural_key=["device_no"]),
    "collectors": EntityConfig(natural_key=["name"]),
    "videos": EntityConfig(
        references={"collection_meta.device_id": "devices",
                    "collection_meta.collector_id": "collectors"},
        blob_fields=["storage_meta.gcs"],
        children=["annotation_runs", "segmentations", "video_steps"],
        compare_ignore=["created_at", "updated_at"],
    ),
    "video_steps": EntityConfig(blob_fields=["result_ref", "debug_ref"]),
}


def schema_of(tmp_path: Path, sql: str, config: dict[str, EntityConfig] | None = None) -> Schema:
    db = sqlite_utils.Database(tmp_path / "records.db")
    db.executescript(sql)
    return build_schema(describe(db), config or {})


def test_describe_reads_columns_keys_and_foreign_keys(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "records.db")
    db.executescript(GRACE)
    tables = {t.name: t for t in describe(db)}
    videos = tables["videos"]
    assert videos.primary_key == ("id",)
    assert [c.name for c in videos.columns][:3] == ["id", "title", "location_id"]
    types = {c.name: c for c in videos.columns}
    assert types["collection_meta"].is_json and types["storage_meta"].is_json
    assert types["storage_meta"].type == "JSONB"
    assert not types["title"].is_json
    assert videos.foreign_keys == (("location_id", "locations", "id"), ("vendor_id", "vendors", "id"))
    # REFERENCES videos (no column) means the key of videos
    assert tables["video_steps"].foreign_keys == (("video_id", "videos", "id"),)
    assert tables["devices"].columns[1].notnull
    assert tables["audit_log"].primary_key == ()  # a rowid table has no key for syncd


def test_describe_skips_fts_tables(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "records.db")
    docs = db.table("docs")
    docs.insert({"id": 1, "body": "hello"}, pk="id")
    docs.enable_fts(["body"], fts_version="FTS5")
    assert [t.name for t in describe(db)] == ["docs"]


def test_grace_schema(tmp_path: Path) -> None:
    schema = schema_of(tmp_path, GRACE, GRACE_CONFIG)
    assert set(schema.entities) == {"devices", "locations", "vendors", "collectors", "videos",
                                    "annotation_runs", "segmentations", "video_steps"}
    assert schema.ignored == {"audit_log": "table 'audit_log' has no primary key"}
    assert schema.order == ("collectors", "devices", "locations", "vendors", "videos",
                            "annotation_runs", "segmentations", "video_steps")
    for name in schema.order:
        for parent in schema.parents(name):
            assert schema.rank(parent) < schema.rank(name)
    videos = schema.entity("videos")
    assert videos.key == "id"
    assert videos.json_columns == {"collection_meta", "storage_meta"}
    assert videos.index("vendor_id") == 3
    assert set(videos.references) == {
        Reference(FieldPath("location_id"), "locations", "sql"),
        Reference(FieldPath("vendor_id"), "vendors", "sql"),
        Reference(FieldPath("collection_meta", ("device_id",)), "devices", "config"),
        Reference(FieldPath("collection_meta", ("collector_id",)), "collectors", "config"),
    }
    assert schema.parents("videos") == ("collectors", "devices", "locations", "vendors")
    assert videos.blob_fields == (FieldPath("storage_meta", ("gcs",)),)
    assert videos.compare_ignore == {"created_at", "updated_at"}
    assert schema.entity("devices").natural_key == ("device_no",)
    assert schema.entity("video_steps").key == "id"


def test_json_reference_changes_the_order(tmp_path: Path) -> None:
    # without the config references, devices has no dependants and sorts by name only
    sql = ("CREATE TABLE a_videos (id TEXT PRIMARY KEY, meta JSON);"
           "CREATE TABLE z_devices (id TEXT PRIMARY KEY);")
    assert schema_of(tmp_path, sql).order == ("a_videos", "z_devices")
    (tmp_path / "records.db").unlink()
    config = {"a_videos": EntityConfig(references={"meta.device.id": "z_devices"})}
    assert schema_of(tmp_path, sql, config).order == ("z_devices", "a_videos")


def test_root_tree_and_link(tmp_path: Path) -> None:
    schema = schema_of(tmp_path, GRACE, GRACE_CONFIG)
    assert schema.root() == "videos"
    assert schema.tree("videos") == ("videos", "annotation_runs", "segmentations", "video_steps")
    tree = schema.tree("videos")
    assert schema.link("video_steps", tree) == (
        Reference(FieldPath("video_id"), "videos", "sql"),)
    assert {r.target for r in schema.link("segmentations", tree)} == {"videos", "annotation_runs"}
    assert schema.tree("devices") == ("devices",)


def test_nested_children_and_unlinked_child(tmp_path: Path) -> None:
    config = dict(GRACE_CONFIG)
    config["videos"] = EntityConfig(children=["annotation_runs"])
    config["annotation_runs"] = EntityConfig(children=["segmentations"])
    schema = schema_of(tmp_path, GRACE, config)
    assert schema.root() == "videos"  # annotation_runs declares children but is a child itself
    assert schema.tree("videos") == ("videos", "annotation_runs", "segmentations")
    # collectors is not referenced by video_steps, so video_steps cannot be found from it
    (tmp_path / "records.db").unlink()
    config["collectors"] = EntityConfig(children=["video_steps"])
    schema = schema_of(tmp_path, GRACE, config)
    with pytest.raises(SchemaError, match="child entity 'video_steps' has no reference"):
        schema.tree("collectors")
    with pytest.raises(SchemaError, match="cannot choose a root entity"):
        schema.root()


def test_no_root(tmp_path: Path) -> None:
    schema = schema_of(tmp_path, GRACE)
    with pytest.raises(SchemaError, match="no entity declares children"):
        schema.root()


def test_self_reference_is_accepted(tmp_path: Path) -> None:
    sql = ("CREATE TABLE folders (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES folders(id),"
           " owner_id TEXT REFERENCES users(id));"
           "CREATE TABLE users (id TEXT PRIMARY KEY);")
    schema = schema_of(tmp_path, sql)
    assert schema.order == ("users", "folders")
    assert schema.parents("folders") == ("users",)
    assert schema.entity("folders").self_references == (
        Reference(FieldPath("parent_id"), "folders", "sql"),)


def test_cycle_is_refused_and_named(tmp_path: Path) -> None:
    sql = ("CREATE TABLE a (id TEXT PRIMARY KEY, b_id TEXT REFERENCES b(id));"
           "CREATE TABLE b (id TEXT PRIMARY KEY, a_id TEXT REFERENCES a(id));"
           "CREATE TABLE c (id TEXT PRIMARY KEY, a_id TEXT REFERENCES a(id));")
    with pytest.raises(SchemaError, match=r"^reference cycle: a → b → a \(via a\.b_id, b\.a_id\)$"):
        schema_of(tmp_path, sql)


def test_cycle_through_config_reference(tmp_path: Path) -> None:
    sql = ("CREATE TABLE a (id TEXT PRIMARY KEY, meta JSON);"
           "CREATE TABLE b (id TEXT PRIMARY KEY, a_id TEXT REFERENCES a(id));")
    with pytest.raises(SchemaError, match="reference cycle: a → b → a"):
        schema_of(tmp_path, sql, {"a": EntityConfig(references={"meta.b": "b"})})


def test_reference_to_composite_key_table(tmp_path: Path) -> None:
    sql = ("CREATE TABLE pairs (x TEXT, y TEXT, PRIMARY KEY (x, y));"
           "CREATE TABLE things (id TEXT PRIMARY KEY, x TEXT, y TEXT,"
           " FOREIGN KEY (x, y) REFERENCES pairs(x, y));")
    with pytest.raises(SchemaError, match="composite primary key"):
        schema_of(tmp_path, sql)


def test_config_reference_to_non_entity(tmp_path: Path) -> None:
    sql = ("CREATE TABLE pairs (x TEXT, y TEXT, PRIMARY KEY (x, y));"
           "CREATE TABLE things (id TEXT PRIMARY KEY, x TEXT);")
    with pytest.raises(SchemaError, match=r"entities\.things\.references.*composite primary key"):
        schema_of(tmp_path, sql, {"things": EntityConfig(references={"x": "pairs"})})
    # the table alone is fine: it is listed as ignored with the reason
    schema = schema_of(tmp_path, "")
    assert "pairs" in schema.ignored and "composite" in schema.ignored["pairs"]


def test_foreign_key_to_a_non_key_column(tmp_path: Path) -> None:
    sql = ("CREATE TABLE devices (id TEXT PRIMARY KEY, device_no TEXT UNIQUE);"
           "CREATE TABLE videos (id TEXT PRIMARY KEY, device_no TEXT REFERENCES devices(device_no));")
    with pytest.raises(SchemaError, match="not the primary key of 'devices'"):
        schema_of(tmp_path, sql)


@pytest.mark.parametrize("name, conf, expected", [
    ("devices", EntityConfig(natural_key=["device_number"]),
     "entities.devices.natural_key: unknown field 'device_number' on entity 'devices'"),
    ("videos", EntityConfig(blob_fields=["storage_meta.gcs", "title.x"]),
     "entities.videos.blob_fields: field 'title.x' on entity 'videos': 'title' is not a JSON column"),
    ("videos", EntityConfig(compare_ignore=["created"]),
     "entities.videos.compare_ignore: unknown field 'created'"),
    ("videos", EntityConfig(compare_ignore=["collection_meta.x"]),
     "entities.videos.compare_ignore: 'collection_meta.x' is a JSON path"),
    ("videos", EntityConfig(children=["steps"]), "entities.videos.children: unknown entity 'steps'"),
    ("videos", EntityConfig(children=["videos"]), "entities.videos.children: an entity cannot be its own child"),
    ("videos", EntityConfig(references={"collection_meta.device_id": "devicez"}),
     "entities.videos.references: 'collection_meta.device_id' → 'devicez': no table named 'devicez'"),
    ("videos", EntityConfig(references={"meta.device_id": "devices"}),
     "entities.videos.references: unknown field 'meta'"),
    ("videos", EntityConfig(references={"title.device_id": "devices"}),
     "'title' is not a JSON column"),
    ("videos", EntityConfig(references={"location_id": "vendors"}),
     "contradicts the foreign key to 'locations'"),
    ("video", EntityConfig(), "entities.video: no table named 'video'"),
    ("audit_log", EntityConfig(), "entities.audit_log: table 'audit_log' has no primary key"),
])
def test_unknown_names_in_config(tmp_path: Path, name: str, conf: EntityConfig, expected: str) -> None:
    with pytest.raises(SchemaError) as info:
        schema_of(tmp_path, GRACE, {name: conf})
    assert expected in str(info.value)


def test_entity_lookups(tmp_path: Path) -> None:
    schema = schema_of(tmp_path, GRACE, GRACE_CONFIG)
    with pytest.raises(SchemaError, match=r"unknown entity 'video' \(known: collectors, devices"):
        schema.entity("video")
    videos = schema.entity("videos")
    assert videos.field("collection_meta.device_id") == FieldPath("collection_meta", ("device_id",))
    assert str(videos.field("collection_meta.device_id")) == "collection_meta.device_id"
    assert videos.field("title") == FieldPath("title") and not videos.field("title").nested
    with pytest.raises(SchemaError, match="unknown field 'x' on entity 'videos'"):
        videos.field("x")
    with pytest.raises(SchemaError, match="invalid JSON path"):
        videos.field("collection_meta..x")
    with pytest.raises(SchemaError):
        videos.index("nope")
    assert schema.link("videos", ["devices"]) == (
        Reference(FieldPath("collection_meta", ("device_id",)), "devices", "config"),)


def test_field_path_values() -> None:
    from syncd.records import field_value, with_fields

    entity = build_schema([TableInfo("t", (Column("id", "TEXT", True, False), Column("collection_meta", "JSON", False, True)),
                                     ("id",), ())], {}).entity("t")
    path = FieldPath("collection_meta", ("device", "id"))
    row = ("k", '{"device": {"id": "d1"}, "n": 1}')
    assert field_value(entity, row, path) == "d1"
    assert field_value(entity, row, FieldPath("collection_meta", ("missing",))) is None
    assert field_value(entity, row, FieldPath("collection_meta")) == row[1]
    updated = with_fields(entity, row, {path: "d2"})
    assert updated[1] == '{"device":{"id":"d2"},"n":1}'
    assert row[1].startswith('{"device": {"id": "d1"}')  # the input is untouched
    assert get_in({"a": [1]}, ("a", "b")) is None
    assert set_in(None, ("a",), 1) == {"a": 1}
    assert FieldPath("m", ("device_id", "odd key")).json_path == '$.device_id."odd key"'
