"""The RecordStore contract: what every record store must do, whatever holds the records.

Every store (memory, SQLite, later Postgres) runs these same assertions over the same small
world, `TABLES` and `ROWS`. A store's test module subclasses `RecordStoreContract` and provides
one fixture:

    open_world   an async callable (readonly: bool) → an open store over a fresh copy of the
                 world; called twice in one test, both stores may share one world

SQL stores build the world with `create_table_sql(TABLES)` and `world_rows()` (JSON columns
as JSON text). The contract asserts only what every store shares; SQLite's value rules
(affinity, mixed types) are compared between the memory and SQLite stores in
tests/test_memory_store.py instead.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from syncd.config import EntityConfig
from syncd.errors import PermanentError
from syncd.filters import parse_filters
from syncd.schema import Entity, Schema, build_schema
from syncd.stores.base import Atomic, KeyRange, RecordStore
from syncd.stores.memory import Table

Opener = Callable[[bool], Awaitable[RecordStore]]

TABLES = {
    "sites": Table(["id INTEGER", "name TEXT NOT NULL", "region TEXT"]),
    "devices": Table(
        ["id TEXT", "site_id INTEGER", "serial VARCHAR(16)", "size INTEGER", "score REAL",
         "created_at DATETIME", "meta JSON"],
        foreign_keys={"site_id": "sites"}),
}
ENTITIES = {"devices": EntityConfig(natural_key=["site_id", "serial"])}
ROWS: dict[str, list[dict[str, Any]]] = {
    "sites": [
        {"id": 1, "name": "Lyon", "region": "south"},
        {"id": 2, "name": "Paris", "region": "north"},
        {"id": 3, "name": "Brest", "region": None},
    ],
    "devices": [  # d2 and d4 share created_at: the (column, key) keyset must break the tie
        {"id": "d1", "site_id": 1, "serial": "A-001", "size": 10, "score": 1.5,
         "created_at": "2024-01-01T10:00:00",
         "meta": {"owner": {"team": "ops"}, "count": 3, "ok": True}},
        {"id": "d2", "site_id": 1, "serial": "A-002", "size": 20, "score": 2.5,
         "created_at": "2024-01-02T10:00:00",
         "meta": {"owner": {"team": "lab"}, "count": 7, "ok": False}},
        {"id": "d3", "site_id": 2, "serial": "a-003", "size": None, "score": None,
         "created_at": None, "meta": {"count": None}},
        {"id": "d4", "site_id": 2, "serial": "B_004", "size": 30, "score": 3.5,
         "created_at": "2024-01-02T10:00:00", "meta": None},
        {"id": "d5", "site_id": None, "serial": "A-001", "size": 40, "score": 0.5,
         "created_at": "2024-01-03T00:00:00", "meta": {"owner": {"team": "ops"}, "count": 12}},
        {"id": "d6", "site_id": 3, "serial": None, "size": 5, "score": 9.0,
         "created_at": None, "meta": {"owner": "nobody"}},
    ],
}
DEVICES = ["d1", "d2", "d3", "d4", "d5", "d6"]

# (filters, the devices they select): every op, on columns and on JSON dot paths
FILTER_CASES = [
    (["serial:eq:A-001"], ["d1", "d5"]),
    (["serial:ne:A-001"], ["d2", "d3", "d4", "d6"]),  # ne matches NULL
    (["size:gt:10"], ["d2", "d4", "d5"]),
    (["size:gte:20"], ["d2", "d4", "d5"]),
    (["size:lt:20"], ["d1", "d6"]),
    (["size:lte:10"], ["d1", "d6"]),
    (["score:gt:1.5"], ["d2", "d4", "d6"]),
    (["site_id:in:[1, 3]"], ["d1", "d2", "d6"]),
    (["site_id:nin:[1]"], ["d3", "d4", "d5", "d6"]),  # nin matches NULL
    (["serial:like:a-%"], ["d1", "d2", "d3", "d5"]),  # ASCII case-insensitive
    (["serial:like:B_0%"], ["d4"]),
    (["serial:like:%1"], ["d1", "d5"]),
    (["created_at:isnull:true"], ["d3", "d6"]),
    (["created_at:isnull:false"], ["d1", "d2", "d4", "d5"]),
    (["created_at:gte:2024-01-02"], ["d2", "d4", "d5"]),
    (["meta.count:gt:5"], ["d2", "d5"]),
    (["meta.count:eq:3"], ["d1"]),
    (["meta.ok:eq:true"], ["d1"]),  # JSON true is 1
    (["meta.owner.team:eq:ops"], ["d1", "d5"]),
    (["meta.owner.team:ne:ops"], ["d2", "d3", "d4", "d6"]),  # missing and NULL meta included
    (["meta.owner.team:in:[ops, lab]"], ["d1", "d2", "d5"]),
    (["meta.owner.team:nin:[ops]"], ["d2", "d3", "d4", "d6"]),
    (["meta.owner.team:like:O%"], ["d1", "d5"]),
    (["meta.count:isnull:true"], ["d3", "d4", "d6"]),  # JSON null, NULL meta, missing key
    (["meta.owner:eq:nobody"], ["d6"]),
    (["site_id:eq:1", "size:gt:10"], ["d2"]),  # filters are AND-ed
    ([], DEVICES),
]


def world_rows() -> dict[str, list[dict[str, Any]]]:
    """ROWS with JSON columns as the JSON text a store holds (`json.dumps`)."""
    json_columns = {name: {c.name for c in t.described()[0] if c.is_json}
                    for name, t in TABLES.items()}
    return {name: [{c: json.dumps(v) if c in json_columns[name] and v is not None else v
                    for c, v in row.items()} for row in rows]
            for name, rows in ROWS.items()}


def create_table_sql(tables: Mapping[str, Table]) -> list[str]:
    """CREATE TABLE statements for the world (SQLite's dialect; plain enough for others)."""
    return [_create_table(name, table, tables) for name, table in tables.items()]


def _create_table(name: str, table: Table, tables: Mapping[str, Table]) -> str:
    columns, key = table.described()
    parts = [" ".join(filter(None, [_q(c.name), c.type, "NOT NULL" if c.notnull else ""]))
             for c in columns]
    if key:
        parts.append(f"PRIMARY KEY ({', '.join(map(_q, key))})")
    for column, target in table.foreign_keys.items():
        other, other_column = target if isinstance(target, tuple) else (
            target, tables[target].described()[1][0])
        parts.append(f"FOREIGN KEY ({_q(column)}) REFERENCES {_q(other)} ({_q(other_column)})")
    return f"CREATE TABLE {_q(name)} ({', '.join(parts)})"


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def expected(entity: Entity, *keys: Any) -> list[tuple[Any, ...]]:
    """The world's rows with these keys, as a store returns them."""
    by_key = {row[entity.key]: row for row in world_rows()[entity.name]}
    return [tuple(by_key[k].get(c) for c in entity.columns) for k in keys]


def keys_of(entity: Entity, rows: list[tuple[Any, ...]]) -> list[Any]:
    at = entity.index(entity.key)
    return [row[at] for row in rows]


@pytest.mark.anyio
class RecordStoreContract:
    """The assertions; a subclass provides the `open_world` fixture (see the module doc)."""

    @pytest.fixture
    async def store(self, open_world: Opener) -> AsyncIterator[RecordStore]:
        store = await open_world(False)
        yield store
        await store.close()

    @pytest.fixture
    async def schema(self, store: RecordStore) -> Schema:
        return build_schema(await store.describe(), ENTITIES)

    @pytest.fixture
    def devices(self, schema: Schema) -> Entity:
        return schema.entity("devices")

    @pytest.fixture
    def sites(self, schema: Schema) -> Entity:
        return schema.entity("sites")

    # -- describe -------------------------------------------------------------------------

    async def test_describe(self, store: RecordStore) -> None:
        tables = {t.name: t for t in await store.describe()}
        assert sorted(tables) == ["devices", "sites"]
        for name, spec in TABLES.items():
            columns, key = spec.described()
            got = tables[name]
            assert [c.name for c in got.columns] == [c.name for c in columns]
            assert [(c.notnull, c.is_json) for c in got.columns] == [
                (c.notnull, c.is_json) for c in columns]
            assert got.primary_key == key
        assert tables["devices"].foreign_keys == (("site_id", "sites", "id"),)
        assert tables["sites"].foreign_keys == ()

    async def test_schema_from_describe(self, schema: Schema) -> None:
        assert schema.order == ("sites", "devices")
        assert [str(r.field) for r in schema.entity("devices").references] == ["site_id"]

    # -- select_page and select_all ------------------------------------------------------

    async def test_pages_by_key(self, store: RecordStore, devices: Entity) -> None:
        pages, after = [], None
        while page := await store.select_page(devices, [], after, 4 if after is None else 2):
            pages.append(keys_of(devices, page))
            after = keys_of(devices, page)[-1]
        assert pages == [["d1", "d2", "d3", "d4"], ["d5", "d6"]]
        assert await store.select_page(devices, [], None, 10) == expected(devices, *DEVICES)

    async def test_page_limits(self, store: RecordStore, devices: Entity, sites: Entity) -> None:
        assert await store.select_page(devices, [], None, 0) == []
        assert await store.select_page(devices, [], "d6", 10) == []
        assert keys_of(sites, await store.select_page(sites, [], 1, 10)) == [2, 3]

    async def test_pages_with_filters(self, store: RecordStore, devices: Entity) -> None:
        filters = parse_filters(["size:isnull:false"], devices)
        first = await store.select_page(devices, filters, None, 2)
        second = await store.select_page(devices, filters, "d2", 2)
        last = await store.select_page(devices, filters, "d5", 2)
        assert [keys_of(devices, p) for p in (first, second, last)] == [
            ["d1", "d2"], ["d4", "d5"], ["d6"]]

    async def test_pages_by_column(self, store: RecordStore, devices: Entity) -> None:
        """(column, key) order; rows whose column is NULL (d3, d6) left out; ties by key."""
        at = devices.index("created_at")
        seen, after = [], None
        while page := await store.select_page(devices, [], after, 1, order_by="created_at"):
            seen.append((page[0][at], page[0][0]))
            after = seen[-1]
        assert seen == [("2024-01-01T10:00:00", "d1"), ("2024-01-02T10:00:00", "d2"),
                        ("2024-01-02T10:00:00", "d4"), ("2024-01-03T00:00:00", "d5")]
        rest = await store.select_page(devices, [], ("2024-01-02T10:00:00", "d2"), 10,
                                       order_by="created_at")
        assert keys_of(devices, rest) == ["d4", "d5"]

    async def test_pages_by_column_with_filters(self, store: RecordStore, devices: Entity) -> None:
        filters = parse_filters(["meta.owner.team:eq:ops"], devices)
        rows = await store.select_page(devices, filters, None, 10, order_by="size")
        assert keys_of(devices, rows) == ["d1", "d5"]

    @pytest.mark.parametrize(("texts", "keys"), FILTER_CASES,
                             ids=[" & ".join(t) or "none" for t, _ in FILTER_CASES])
    async def test_filter(self, store: RecordStore, devices: Entity, texts: list[str],
                          keys: list[str]) -> None:
        filters = parse_filters(texts, devices)
        page = await store.select_page(devices, filters, None, 100)
        assert page == expected(devices, *keys)
        assert sorted(await store.select_all(devices, filters)) == page

    async def test_select_all_by_reference(self, store: RecordStore, devices: Entity) -> None:
        """How the planner finds children: an `in` on the link, a column or a dot path."""
        by_site = parse_filters(["site_id:in:[2, 3]"], devices)
        assert sorted(keys_of(devices, await store.select_all(devices, by_site))) == [
            "d3", "d4", "d6"]
        by_team = parse_filters(["meta.owner.team:in:[lab]"], devices)
        assert keys_of(devices, await store.select_all(devices, by_team)) == ["d2"]

    # -- lookups --------------------------------------------------------------------------

    async def test_fetch(self, store: RecordStore, devices: Entity, sites: Entity) -> None:
        """Key order, each row once, missing keys absent."""
        rows = await store.fetch(devices, ["d4", "zz", "d1", "d4"])
        assert rows == expected(devices, "d1", "d4")
        assert await store.fetch(devices, []) == []
        assert await store.fetch(sites, [3, 1, 99]) == expected(sites, 1, 3)

    async def test_existing_keys(self, store: RecordStore, devices: Entity, sites: Entity) -> None:
        assert await store.existing_keys(devices, ["d2", "nope", "d6"]) == {"d2", "d6"}
        assert await store.existing_keys(devices, []) == set()
        assert await store.existing_keys(sites, [1, 9]) == {1}

    async def test_match_natural(self, store: RecordStore, devices: Entity) -> None:
        """Both parts must match; a NULL part (d5's site) never does."""
        found = await store.match_natural(devices, [
            (1, "A-001"), (2, "A-001"), (2, "a-003"), (1, "A-002"), (3, "zzz"), (None, "A-001")])
        assert found == {(1, "A-001"): "d1", (2, "a-003"): "d3", (1, "A-002"): "d2"}
        assert await store.match_natural(devices, []) == {}

    async def test_max_key(self, store: RecordStore, devices: Entity, sites: Entity) -> None:
        """The largest integer key (clone chooses new keys above it); None without any."""
        assert isinstance(store, KeyRange)
        largest = max(r["id"] for r in ROWS["sites"])
        assert await store.max_key(sites) == largest
        await store.create(sites, ["id", "name"], [[largest + 40, "far"]])
        assert await store.max_key(sites) == largest + 40
        assert await store.max_key(devices) is None  # text keys only

    async def test_count(self, store: RecordStore, sites: Entity) -> None:
        assert isinstance(store, Atomic)
        assert await store.count(sites, []) == len(ROWS["sites"])
        assert await store.count(sites, parse_filters(["region:eq:south"], sites)) == 1
        assert await store.count(sites, parse_filters(["region:isnull:true"], sites)) == 1

    async def test_atomic_commits_or_rolls_back_everything(self, store: RecordStore, sites: Entity) -> None:
        """Writes inside atomic() are one transaction; a write's own failure inside it is
        rolled back alone (a savepoint), and an error leaving the block undoes all of it."""
        assert isinstance(store, Atomic)
        name = sites.index("name")
        async with store.atomic():
            assert await store.create(sites, ["id", "name"], [[50, "a"]]) == [True]
            assert await store.create(sites, ["id", "name"], [[50, "dup"], [52, "c"]]) == [False, True]
            await store.update(sites, [(1, {"name": "X"})])
            assert await store.count(sites, []) == len(ROWS["sites"]) + 2  # seen inside
        assert await store.existing_keys(sites, [50, 52]) == {50, 52}
        with pytest.raises(RuntimeError):
            async with store.atomic():
                await store.create(sites, ["id", "name"], [[51, "b"]])
                await store.update(sites, [(2, {"name": "Y"})])
                raise RuntimeError("a check failed before the commit")
        assert await store.existing_keys(sites, [51]) == set()
        assert [r[name] for r in await store.fetch(sites, [1, 2])] == ["X", "Paris"]

    # -- writes ---------------------------------------------------------------------------

    async def test_create(self, store: RecordStore, devices: Entity) -> None:
        columns = ["id", "site_id", "serial", "meta"]
        meta = '{"owner": {"team": "new"}}'
        flags = await store.create(devices, columns, [
            ("d7", 2, "C-007", meta), ("d1", 2, "changed", None), ("d8", None, None, None)])
        assert flags == [True, False, True]
        assert await store.fetch(devices, ["d1", "d7"]) == [
            expected(devices, "d1")[0],  # already present: left as it was
            ("d7", 2, "C-007", None, None, None, meta)]
        assert await store.create(devices, columns, [("d9", 1, "x", None)]) == [True]
        assert await store.create(devices, columns, []) == []

    async def test_create_is_one_transaction(self, store: RecordStore, devices: Entity,
                                             sites: Entity) -> None:
        with pytest.raises(PermanentError):  # a dangling reference: nothing is written
            await store.create(devices, ["id", "site_id"], [("d7", 1), ("d8", 99)])
        with pytest.raises(PermanentError):  # NOT NULL
            await store.create(sites, ["id", "name"], [(4, "Nice"), (5, None)])
        assert await store.existing_keys(devices, ["d7", "d8"]) == set()
        assert await store.existing_keys(sites, [4, 5]) == set()

    async def test_create_parent_then_child(self, store: RecordStore, devices: Entity,
                                            sites: Entity) -> None:
        assert await store.create(sites, ["id", "name"], [(4, "Nice")]) == [True]
        assert await store.create(devices, ["id", "site_id"], [("d7", 4)]) == [True]

    async def test_update(self, store: RecordStore, devices: Entity) -> None:
        """True where the key exists, even when the values were already those."""
        meta = '{"count": 4}'
        flags = await store.update(devices, [
            ("d1", {"size": 11, "meta": meta}), ("nope", {"size": 1}), ("d2", {"size": 20})])
        assert flags == [True, False, True]
        d1 = list(expected(devices, "d1")[0])
        d1[devices.index("size")], d1[devices.index("meta")] = 11, meta
        assert await store.fetch(devices, ["d1", "d2", "d3"]) == [
            tuple(d1), *expected(devices, "d2", "d3")]
        assert await store.update(devices, []) == []

    async def test_update_is_one_transaction(self, store: RecordStore, devices: Entity) -> None:
        with pytest.raises(PermanentError):
            await store.update(devices, [("d1", {"size": 99}), ("d2", {"site_id": 99})])
        assert await store.fetch(devices, ["d1", "d2"]) == expected(devices, "d1", "d2")

    async def test_delete(self, store: RecordStore, devices: Entity, sites: Entity) -> None:
        assert await store.delete(devices, ["d6", "nope", "d6"]) == [True, False, False]
        assert await store.existing_keys(devices, DEVICES) == set(DEVICES) - {"d6"}
        assert await store.delete(sites, [3]) == [True]  # its only device is gone
        assert await store.delete(devices, []) == []

    async def test_delete_is_one_transaction(self, store: RecordStore, devices: Entity,
                                             sites: Entity) -> None:
        assert await store.create(sites, ["id", "name"], [(4, "Nice")]) == [True]
        with pytest.raises(PermanentError):  # 4 goes, then site 2 cannot: it has devices
            await store.delete(sites, [4, 2])
        assert await store.existing_keys(sites, [1, 2, 3, 4]) == {1, 2, 3, 4}

    async def test_readonly_refuses_writes(self, open_world: Opener, devices: Entity) -> None:
        store = await open_world(True)
        try:
            assert keys_of(devices, await store.select_page(devices, [], None, 1)) == ["d1"]
            with pytest.raises(PermanentError):
                await store.create(devices, ["id"], [("d7",)])
            with pytest.raises(PermanentError):
                await store.update(devices, [("d1", {"size": 1})])
            with pytest.raises(PermanentError):
                await store.delete(devices, ["d1"])
        finally:
            await store.close()
