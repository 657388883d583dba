"""The Postgres record store: the RecordStore contract on a real server, then what only
Postgres has: its types kept and converted, sequences, the catalog, errors at the edge."""
from __future__ import annotations

import re
import uuid
from decimal import Decimal
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pg_world
from store_contract import Opener, RecordStoreContract, TABLES, create_table_sql, world_rows
from syncd.errors import InputError, PermanentError, SchemaError, TransientError
from syncd.filters import parse_filters
from syncd.schema import build_schema
from syncd.stores.base import RecordStore
from syncd.stores.postgres.store import PostgresStore, _mapped
from syncd.stores.postgres.url import parse_url

# SQLite's declarations of the contract world in Postgres' words (REAL is 8 bytes there)
_PG_TYPES = {"DATETIME": "TIMESTAMP", "REAL": "DOUBLE PRECISION"}


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    with pg_world.database("store") as name:
        yield name


def _schema(db: str) -> str:
    name = f"w_{uuid.uuid4().hex[:10]}"
    with pg_world.connect(db) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(name)))
        for statement in create_table_sql(TABLES):
            conn.execute(re.sub(r"\b(DATETIME|REAL)\b", lambda m: _PG_TYPES[m[1]], statement))
        for table, rows in world_rows().items():
            for row in rows:
                conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, row)),
                    sql.SQL(", ").join([sql.Placeholder()] * len(row))), list(row.values()))
    return name


def store_for(db: str, schema: str = "public", readonly: bool = False) -> PostgresStore:
    return PostgresStore("world", parse_url(pg_world.url(db, schema)), None, readonly=readonly)


class TestPostgresContract(RecordStoreContract):
    @pytest.fixture
    def open_world(self, db: str) -> Opener:
        schema = _schema(db)

        async def open_postgres(readonly: bool) -> RecordStore:
            return store_for(db, schema, readonly)
        return open_postgres


# ---------------------------------------------------------------------------- types

TYPES_DDL = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE typed (
    id uuid PRIMARY KEY, t text, i integer, b bigint, n numeric(12, 3), d double precision,
    flag boolean, day date, ts timestamp, tz timestamptz, j json, jb jsonb, arr integer[],
    tags text[], uids uuid[], raw bytea, feel mood);
"""
U1, U2 = "6f1c2a50-2b8e-4c1e-9d7a-0a1b2c3d4e5f", "00000000-0000-4000-8000-000000000002"
TYPED_ROW = (U1, "héllo", 42, 2**62, "1234.500", 0.1 + 0.2, True, "2024-02-29",
             "2024-01-02T03:04:05.123456", "2024-01-02T03:04:05+02:00", '{"b": 1, "a": [1, 2]}',
             '{"key": {"deep": 1}, "k": true}', [1, None, 3], ["a", "b,c"], [U2], b"\x00\xff",
             "sad")


@pytest.fixture
def typed_db() -> Iterator[str]:
    with pg_world.database("types") as name:
        with pg_world.connect(name) as conn:
            conn.execute(TYPES_DDL)
            conn.execute("CREATE SCHEMA copy")
            conn.execute(TYPES_DDL.replace("TYPE mood", "TYPE copy.mood")
                         .replace("TABLE typed", "TABLE copy.typed").replace(" mood)", " copy.mood)"))
            marks = ", ".join(["%s"] * len(TYPED_ROW))
            conn.execute(f"INSERT INTO typed VALUES ({marks})", TYPED_ROW)
            conn.execute("INSERT INTO typed (id) VALUES (%s)", [U2])
        yield name


def raw_rows(db: str, table: str) -> list[tuple[Any, ...]]:
    return pg_world.execute(db, f"SELECT * FROM {table} ORDER BY id")


@pytest.mark.anyio
async def test_postgres_to_postgres_keeps_every_type_exactly(typed_db: str) -> None:
    source, target = store_for(typed_db, readonly=True), store_for(typed_db, "copy")
    try:
        tables = {t.name: t for t in await source.describe()}
        assert [(c.name, c.type, c.is_json) for c in tables["typed"].columns][9:13] == [
            ("tz", "TIMESTAMP WITH TIME ZONE", False), ("j", "JSON", True),
            ("jb", "JSONB", True), ("arr", "INTEGER[]", False)]
        typed = build_schema(await source.describe(), {}).entity("typed")
        rows = await source.select_page(typed, [], None, 10)
        assert rows[1] == (U1, "héllo", 42, 2**62, "1234.500", 0.1 + 0.2, 1, "2024-02-29",
                           "2024-01-02T03:04:05.123456", "2024-01-02T01:04:05Z",
                           '{"b": 1, "a": [1, 2]}', '{"k": true, "key": {"deep": 1}}',
                           [1, None, 3], ["a", "b,c"], [U2], b"\x00\xff", "sad")
        assert await target.create(typed, typed.columns, rows) == [True, True]
        assert raw_rows(typed_db, "copy.typed") == raw_rows(typed_db, "typed")
        assert await target.fetch(typed, [U1, U2]) == sorted(rows)
    finally:
        await source.close()
        await target.close()


@pytest.mark.anyio
async def test_sqlite_values_are_converted_by_the_target_column(typed_db: str) -> None:
    store = store_for(typed_db, "copy")
    try:
        typed = build_schema(await store.describe(), {}).entity("typed")
        columns = ["id", "flag", "tz", "jb", "n", "arr", "t"]
        sqlite_row = (U1.upper(), 0, "2025-01-01T00:00:00Z", '{"a":1}', 1.25, "[4, 5]", 7)
        assert await store.create(typed, columns, [sqlite_row]) == [True]
        (row,) = pg_world.execute(typed_db, "SELECT id, flag, tz, jb, n, arr, t FROM copy.typed")
        assert row[0] == uuid.UUID(U1) and row[1] is False and row[2].isoformat() == "2025-01-01T00:00:00+00:00"
        assert row[3:] == ({"a": 1}, Decimal("1.250"), [4, 5], "7")
        assert await store.update(typed, [(U1, {"flag": 1, "jb": {"b": 2}})]) == [True]
        assert pg_world.execute(typed_db, "SELECT flag, jb FROM copy.typed") == [(True, {"b": 2})]
    finally:
        await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize(("column", "value", "why"), [
    ("flag", 2, "not a boolean"),
    ("ts", "2024-01-02T03:04:05Z", "utc offset"),
    ("id", "not-a-uuid", "uuid"),
    ("i", "12.5", "integer"),
    ("t", b"\x01", "bytes"),
    ("day", "2024-13-45", "date"),
])
async def test_a_value_that_cannot_be_converted_fails_naming_the_record(
        typed_db: str, column: str, value: Any, why: str) -> None:
    store = store_for(typed_db, "copy")
    try:
        typed = build_schema(await store.describe(), {}).entity("typed")
        key = value if column == "id" else U2
        rows = [(U1, None), (key, value)] if column != "id" else [(U1, None), (value, None)]
        columns = ["id", column] if column != "id" else ["id", "t"]
        with pytest.raises(PermanentError) as caught:
            await store.create(typed, columns, rows)
        message = str(caught.value)
        assert "typed" in message and repr(key) in message and repr(value) in message, message
        assert f"'{column}'" in message and why in message.lower(), message
        assert pg_world.execute(typed_db, "SELECT count(*) FROM copy.typed") == [(0,)]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_filters_on_postgres_types(typed_db: str) -> None:
    store = store_for(typed_db, readonly=True)
    try:
        typed = build_schema(await store.describe(), {}).entity("typed")
        cases = {
            "tz:gte:2024-01-02T01:00:00Z": [U1], "flag:eq:true": [U1], "flag:ne:true": [U2],
            "feel:eq:sad": [U1], "feel:in:[happy]": [], "jb.key.deep:eq:1": [U1],
            "jb.k:eq:true": [U1], "j.b:gt:0": [U1], "n:gt:1000": [U1], "day:lt:2025-01-01": [U1],
            f"id:eq:{U2}": [U2], "id:eq:nope": [], "id:ne:nope": [U2, U1], "t:like:H%": [U1],
            "ts:like:2024-01-02T%": [U1], "tz:isnull:true": [U2], "d:lt:0.31": [U1],
        }
        for text, keys in cases.items():
            rows = await store.select_all(typed, parse_filters([text], typed))
            assert sorted(r[0] for r in rows) == sorted(keys), text
    finally:
        await store.close()


# ---------------------------------------------------------------------------- sequences

@pytest.mark.anyio
@pytest.mark.parametrize("declaration", [
    "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",  # Django's AutoField since 4.1
    "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "serial PRIMARY KEY",
])
async def test_sequences_move_past_copied_keys(declaration: str) -> None:
    with pg_world.database("seq") as db:
        pg_world.execute(db, f"CREATE TABLE items (id {declaration}, name text)")
        pg_world.execute(db, "INSERT INTO items (name) VALUES ('first')")  # takes id 1
        store = store_for(db)
        try:
            items = build_schema(await store.describe(), {}).entity("items")
            flags = await store.create(items, ["id", "name"], [(1, "dup"), (10, "a"), (7, "b")])
            assert flags == [False, True, True]
            assert await store.create(items, ["id", "name"], [(3, "c")]) == [True]  # below the top
        finally:
            await store.close()
        # the application's own insert after the copy: the next id is past every copied key
        assert pg_world.execute(db, "INSERT INTO items (name) VALUES ('app') RETURNING id") == [(11,)]
        assert pg_world.execute(db, "INSERT INTO items DEFAULT VALUES RETURNING id") == [(12,)]


# ---------------------------------------------------------------------------- catalog, errors

@pytest.mark.anyio
async def test_a_foreign_key_to_another_schema_is_refused() -> None:
    with pg_world.database("xschema") as db:
        pg_world.execute(db, "CREATE SCHEMA other; CREATE TABLE other.sites (id int PRIMARY KEY);"
                             "CREATE TABLE devices (id int PRIMARY KEY, site_id int "
                             "REFERENCES other.sites(id))")
        store = store_for(db)
        try:
            with pytest.raises(SchemaError, match="references other.sites in another schema"):
                await store.describe()
            assert [t.name for t in await store_for(db, "other").describe()] == ["sites"]
        finally:
            await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://postgres@127.0.0.1:1/postgres", "cannot connect to 127.0.0.1:1/postgres"),
    ("postgresql://postgres@127.0.0.1:5432/syncd_no_such_db", 'database "syncd_no_such_db" does not exist'),
    ("postgresql://syncd_no_role@127.0.0.1:5432/postgres", 'role "syncd_no_role" does not exist'),
    ("postgresql://postgres@127.0.0.1:5432/postgres?schema=nope", "schema 'nope' does not exist"),
])
async def test_connection_problems_are_input_errors(url: str, message: str) -> None:
    store = PostgresStore("dev", parse_url(url), None, readonly=False)
    with pytest.raises(InputError) as caught:
        await store.describe()
    assert str(caught.value).startswith("environment 'dev': ")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    await store.close()


@pytest.mark.anyio
async def test_errors_are_mapped_at_the_edge(typed_db: str) -> None:
    store = store_for(typed_db, "copy")
    try:
        typed = build_schema(await store.describe(), {}).entity("typed")
        assert await store.create(typed, ["id"], [(U1,)]) == [True]
        with pytest.raises(PermanentError, match="no column 'nope'"):
            await store.update(typed, [(U1, {"nope": 1})])
        with pytest.raises(SchemaError, match="not a column"):
            await store.select_page(typed, [], None, 1, order_by="nope")
        with pytest.raises(psycopg.Error, match="terminat"):  # a lost connection…
            with pg_world.connect(typed_db) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", [typed_db])
                admin.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        assert await store.existing_keys(typed, [U1]) == {U1}  # …is replaced by the pool
    finally:
        await store.close()


@pytest.mark.parametrize(("error", "kind"), [
    (psycopg.errors.SerializationFailure, TransientError),
    (psycopg.errors.DeadlockDetected, TransientError),
    (psycopg.errors.LockNotAvailable, TransientError),
    (psycopg.errors.AdminShutdown, TransientError),  # the server went away mid-call
    (psycopg.OperationalError, TransientError),
    (psycopg.errors.UniqueViolation, PermanentError),
    (psycopg.errors.ForeignKeyViolation, PermanentError),
    (psycopg.errors.NotNullViolation, PermanentError),
    (psycopg.errors.InvalidTextRepresentation, PermanentError),
    (psycopg.errors.ReadOnlySqlTransaction, PermanentError),
])
def test_error_classes_map_to_transient_or_permanent(error: type[psycopg.Error],
                                                      kind: type[Exception]) -> None:
    mapped = _mapped(error("boom\nsecond line"))
    assert type(mapped) is kind and str(mapped) == "postgres: boom"
