"""key:op:value filters: parsing, typing, and the SQL run against a real SQLite table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlite_utils

from syncd.errors import FilterError
from syncd.filters import OPS, Filter, parse_filter, parse_filters, to_sql
from syncd.schema import Entity, FieldPath, build_schema
from syncd.stores.sqlite_describe import describe

TABLE = """
CREATE TABLE videos (
    id TEXT PRIMARY KEY,
    status TEXT,
    device_no VARCHAR(8),
    size INTEGER,
    score REAL,
    amount DECIMAL(10, 2),
    is_public BOOLEAN,
    created_at DATETIME,
    collection_meta JSON
);
"""
ROWS = [
    ("v1", "done", "0042", 10, 1.5, 3, 1, "2024-01-01T10:00:00",
     {"device_id": "d1", "count": 3, "ok": True, "odd key": "x", "serial": "0042"}),
    ("v2", "new", "0043", 20, 2.5, 4.5, 0, "2024-02-01T10:00:00",
     {"device_id": "d2", "count": 7, "ok": False, "ratio": 0.5}),
    ("v3", None, "42", None, None, None, None, None, {"device_id": "d:3", "count": None}),
    ("v4", "it's \"quoted\"", "abc", 30, 3.5, 1, 1, "2024-03-01T00:00:00", None),
]


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    db = sqlite_utils.Database(tmp_path / "records.db")
    db.executescript(TABLE)
    db.conn.executemany(
        "INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row[:-1], None if row[-1] is None else json.dumps(row[-1])) for row in ROWS],
    )
    db.conn.commit()
    return db


@pytest.fixture
def videos(db: sqlite_utils.Database) -> Entity:
    return build_schema(describe(db), {}).entity("videos")


def select(db: sqlite_utils.Database, videos: Entity, *texts: str) -> list[str]:
    where, params = to_sql(parse_filters(texts, videos), videos)
    sql = 'SELECT id FROM videos' + (f" WHERE {where}" if where else "") + " ORDER BY id"
    return [row[0] for row in db.execute(sql, params).fetchall()]


PLAIN_CASES = [
    ((), ["v1", "v2", "v3", "v4"]),
    (("status:eq:done",), ["v1"]),
    (("status:ne:done",), ["v2", "v3", "v4"]),  # NULL status counts as "not done"
    (("size:gt:10",), ["v2", "v4"]),
    (("size:gte:20",), ["v2", "v4"]),
    (("size:lt:20",), ["v1"]),
    (("size:lte:20",), ["v1", "v2"]),
    (("score:gt:2",), ["v2", "v4"]),
    (("amount:gte:3",), ["v1", "v2"]),
    (("status:in:[done, new]",), ["v1", "v2"]),
    (("status:nin:[done,new]",), ["v3", "v4"]),
    (("size:in:[10,30]",), ["v1", "v4"]),
    (("status:like:d%",), ["v1"]),
    (("status:isnull:true",), ["v3"]),
    (("status:isnull:false",), ["v1", "v2", "v4"]),
    (("is_public:eq:true",), ["v1", "v4"]),
    (("is_public:eq:0",), ["v2"]),
    # timestamps keep their ':'; a DATETIME column compares them as text
    (("created_at:gte:2024-02-01T10:00:00",), ["v2", "v4"]),
    (("created_at:lt:2024-02-01T10:00:00",), ["v1"]),
    # text columns keep leading zeros
    (("device_no:eq:0042",), ["v1"]),
    (("device_no:eq:42",), ["v3"]),
    (("device_no:in:[0042,42]",), ["v1", "v3"]),
    # several filters are AND-ed
    (("size:gte:10", "status:ne:new"), ["v1", "v4"]),
]
JSON_CASES = [
    (("collection_meta.device_id:eq:d1",), ["v1"]),
    (("collection_meta.device_id:eq:d:3",), ["v3"]),
    (("collection_meta.device_id:ne:d1",), ["v2", "v3", "v4"]),
    (("collection_meta.count:gt:3",), ["v2"]),
    (("collection_meta.count:gte:3",), ["v1", "v2"]),
    (("collection_meta.count:lt:7",), ["v1"]),
    (("collection_meta.count:lte:7",), ["v1", "v2"]),
    (("collection_meta.ratio:eq:0.5",), ["v2"]),
    (("collection_meta.ok:eq:true",), ["v1"]),
    (("collection_meta.ok:eq:false",), ["v2"]),
    (("collection_meta.device_id:in:[d1, 'd:3']",), ["v1", "v3"]),
    (("collection_meta.device_id:nin:[d1,d2]",), ["v3", "v4"]),
    (("collection_meta.count:in:[3,7]",), ["v1", "v2"]),
    (("collection_meta.device_id:like:d_",), ["v1", "v2"]),
    (("collection_meta.count:isnull:true",), ["v3", "v4"]),  # JSON null and no object at all
    (("collection_meta.count:isnull:false",), ["v1", "v2"]),
    (("collection_meta.odd key:eq:x",), ["v1"]),
    # "0042" is not a JSON number, so it stays text; a quoted value is always text
    (("collection_meta.serial:eq:0042",), ["v1"]),
    (('collection_meta.count:eq:"3"',), []),
    (("collection_meta:isnull:true",), ["v4"]),
]


@pytest.mark.parametrize("texts, expected", PLAIN_CASES)
def test_plain_columns(db: sqlite_utils.Database, videos: Entity, texts: tuple[str, ...],
                       expected: list[str]) -> None:
    assert select(db, videos, *texts) == expected


@pytest.mark.parametrize("texts, expected", JSON_CASES)
def test_json_paths(db: sqlite_utils.Database, videos: Entity, texts: tuple[str, ...],
                    expected: list[str]) -> None:
    assert select(db, videos, *texts) == expected


def test_every_op_is_covered() -> None:
    for cases in (PLAIN_CASES, JSON_CASES):
        assert {text.split(":")[1] for texts, _ in cases for text in texts} == set(OPS)


def test_parsed_values_are_typed(videos: Entity) -> None:
    assert parse_filter("size:eq:0042", videos) == Filter(FieldPath("size"), "eq", 42)
    assert parse_filter("score:lt:1e3", videos).value == 1000.0
    assert parse_filter("device_no:eq:0042", videos).value == "0042"
    assert parse_filter("amount:eq:2.50", videos).value == 2.5
    assert parse_filter("status:eq: done ", videos).value == "done"
    assert parse_filter('status:eq:" done "', videos).value == " done "
    assert parse_filter("collection_meta.count:eq:-3", videos).value == -3
    assert parse_filter("collection_meta.x:eq:007", videos).value == "007"
    assert parse_filter("collection_meta.x:eq:true", videos).value == 1
    assert parse_filter("collection_meta.x:in:[1, 'a,b', \"2\"]", videos).value == [1, "a,b", "2"]
    assert parse_filter("collection_meta:eq:123", videos).value == "123"  # JSON text, not a number
    assert parse_filter("status:isnull:TRUE", videos).value is True
    assert parse_filter("size:like:1%", videos).value == "1%"
    assert parse_filter("created_at:gt:2024-01-01T10:00:00", videos).value == "2024-01-01T10:00:00"
    flt = parse_filter("collection_meta.device_id:EQ:d1", videos)
    assert flt.field == FieldPath("collection_meta", ("device_id",)) and flt.op == "eq"


def test_sql_shape(videos: Entity) -> None:
    filters = parse_filters(["status:eq:done", "collection_meta.device_id:eq:d1"], videos)
    assert to_sql(filters, videos) == (
        '"status" = ? AND json_extract("collection_meta", ?) = ?',
        ["done", "$.device_id", "d1"],
    )
    assert to_sql((), videos) == ("", [])


@pytest.mark.parametrize("text, message", [
    ("status:foo:1", "unknown filter op 'foo' in 'status:foo:1' (ops: eq, ne, gt, gte, lt, lte, in, nin, like, isnull)"),
    ("status:eq", "malformed filter 'status:eq'"),
    ("status", "malformed filter 'status'"),
    (":eq:1", "malformed filter ':eq:1'"),
    ("status::1", "malformed filter"),
    ("nope:eq:1", "unknown field 'nope' on entity 'videos' in filter 'nope:eq:1'"),
    ("status.x:eq:1", "'status' is not a JSON column"),
    ("size:eq:ten", "integer value expected, got 'ten'"),
    ("score:gt:1.2.3", "real value expected"),
    ("size:in:[1,x]", "integer value expected, got 'x'"),
    ("status:in:done,new", "in/nin take a list in brackets"),
    ("status:in:[]", "empty list"),
    ("status:nin:[a,,b]", "empty list or list item"),
    ("status:isnull:yes", "isnull takes true or false"),
])
def test_bad_filters(videos: Entity, text: str, message: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text, videos)
    assert message in str(info.value)


def test_hostile_field_is_rejected(db: sqlite_utils.Database, videos: Entity) -> None:
    for text in ['id"; DROP TABLE videos; --:eq:1', 'collection_meta.a"b:eq:1']:
        with pytest.raises(FilterError):
            parse_filter(text, videos)
    # a hand-built Filter is validated again before its column is quoted
    for field in (FieldPath('id"; DROP TABLE videos; --'), FieldPath("status", ("x",)),
                  FieldPath("collection_meta", ('a") OR 1=1 --',))):
        with pytest.raises(FilterError):
            to_sql([Filter(field, "eq", 1)], videos)
    assert "videos" in db.table_names()


def test_hostile_values_are_parameters(db: sqlite_utils.Database, videos: Entity) -> None:
    assert select(db, videos, "status:eq:x' OR '1'='1") == []
    assert select(db, videos, "status:eq:x'; DROP TABLE videos; --") == []
    assert select(db, videos, 'status:eq:it\'s "quoted"') == ["v4"]
    assert select(db, videos, 'status:in:[\'it\'s "quoted"\', done]') == ["v1", "v4"]
    assert select(db, videos, "collection_meta.device_id:eq:') OR 1=1 --") == []
    assert "videos" in db.table_names() and db["videos"].count == 4
