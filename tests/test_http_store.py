"""HttpStore against a real server with tiny limits answers exactly what SqliteStore answers.

The server allows 7 rows or keys per request and 4 KiB bodies, so every call below is split
into many requests (reads concurrently, writes in order) and joined again.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Iterator

import anyio
import pytest

import world as world_module
from http_fixtures import READ_TOKEN, TOKEN, Server, start_server
from syncd.config import EntityConfig
from syncd.errors import InputError, PermanentError, TransientError
from syncd.filters import Filter, parse_filters
from syncd.retry import RetriesExhausted
from syncd.schema import Schema, build_schema
from syncd.stores.http import HttpOptions, HttpStore, retry_after
from syncd.stores.sqlite import SqliteStore

MAX_PAGE = 7
ENTITIES = {"devices": EntityConfig(natural_key=["device_no"]),
            "videos": EntityConfig(references={"collection_meta.device_id": "devices"})}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, world_module.World]]:
    w = world_module.build_world(tmp_path_factory.mktemp("store") / "w", videos=40, files=False)
    server = start_server(w.config, "prod", "--max-page", str(MAX_PAGE), "--max-body", "4096")
    yield server, w
    server.stop()


def both(served: tuple[Server, world_module.World], test: Any, *, readonly: bool = True) -> None:
    """Run `test(http, sqlite, schema)` with both stores over the same database."""
    server, w = served

    async def main() -> None:
        http = HttpStore("prod", server.url, TOKEN, readonly=readonly)
        local = SqliteStore("prod", w.prod_db, readonly=True)
        try:
            schema = build_schema(await http.describe(), ENTITIES)
            assert schema == build_schema(await local.describe(), ENTITIES)
            await test(http, local, schema)
        finally:
            await http.close()
            await local.close()

    anyio.run(main)


def test_reads_split_into_pages_and_chunks_equal_sqlite(served: Any) -> None:
    async def test(http: HttpStore, local: SqliteStore, schema: Schema) -> None:
        videos, steps, devices = (schema.entity(n) for n in ("videos", "video_steps", "devices"))
        internal = parse_filters(["collection_meta.data_source:eq:internal"], videos)
        for after in (None, (await local.select_page(videos, (), None, 3))[-1][0]):
            assert await http.select_page(videos, internal, after, 25) == \
                await local.select_page(videos, internal, after, 25)
        assert await http.select_page(videos, (), None, 10_000, order_by="created_at") == \
            await local.select_page(videos, (), None, 10_000, order_by="created_at")
        keys = [r[0] for r in await local.select_all(videos, ())]
        linked = [Filter(steps.field("video_id"), "in", keys)]  # 40 > 7: split, joined
        assert sorted(await http.select_all(steps, linked)) == sorted(await local.select_all(steps, linked))
        assert len(await http.select_all(steps, linked)) == 160
        shuffled = keys[::-1] + ["missing"]
        assert await http.fetch(videos, shuffled) == await local.fetch(videos, shuffled)
        assert await http.existing_keys(videos, shuffled) == set(keys)
        nos = [(r[1],) for r in await local.select_all(devices, ())] + [("DEV-none",)]
        assert await http.match_natural(devices, nos) == await local.match_natural(devices, nos)
        assert len(await http.match_natural(devices, nos)) == len(nos) - 1

    both(served, test)


def test_writes_split_in_order_and_report_per_row(served: Any) -> None:
    async def test(http: HttpStore, local: SqliteStore, schema: Schema) -> None:
        vendors = schema.entity("vendors")
        rows = [(f"vendor-{i:03d}", f"Vendor {i} " + "x" * 300) for i in range(30)]  # > 4 KiB
        created = await http.create(vendors, ["id", "name"], rows[:20])
        assert created == [True] * 20
        assert await http.create(vendors, ["id", "name"], rows) == [False] * 20 + [True] * 10
        assert await http.update(vendors, [(r[0], {"name": "renamed"}) for r in rows[:12]] +
                                 [("nobody", {"name": "x"})]) == [True] * 12 + [False]
        assert {r[1] for r in await local.fetch(vendors, [r[0] for r in rows[:12]])} == {"renamed"}
        assert await http.delete(vendors, [r[0] for r in rows] + ["nobody"]) == [True] * 30 + [False]
        assert await local.fetch(vendors, [r[0] for r in rows]) == []

    both(served, test, readonly=False)


def test_other_4xx_are_never_retried(served: Any) -> None:
    async def test(http: HttpStore, local: SqliteStore, schema: Schema) -> None:
        bogus = schema.entity("videos")
        with pytest.raises(PermanentError, match="HTTP 404: no entity 'nowhere'"):
            await http.fetch(type(bogus)("nowhere", "id", ("id",), bogus.types), ["x"])
        assert not http.retries

    both(served, test)
    assert served[0].output().count('"POST /v1/entities/nowhere/fetch HTTP/1.1" 404') == 1


def test_read_only_token_cannot_open_a_target(served: Any) -> None:
    async def main() -> None:
        store = HttpStore("prod", served[0].url, READ_TOKEN, readonly=False)
        try:
            with pytest.raises(InputError, match="read-only; writing needs a read-write token"):
                await store.describe()
        finally:
            await store.close()
        source = HttpStore("prod", served[0].url, READ_TOKEN, readonly=True)
        try:
            vendors = build_schema(await source.describe(), {}).entity("vendors")
            with pytest.raises(PermanentError, match="open read-only"):  # checked client-side
                await source.create(vendors, ["id", "name"], [("v-ro", "V")])
        finally:
            await source.close()

    anyio.run(main)


def test_gives_up_after_its_attempts_as_exhausted_not_transient() -> None:
    async def main() -> None:
        store = HttpStore("gone", "http://127.0.0.1:9", TOKEN, readonly=True,
                          options=HttpOptions(attempts=3, backoff=0.01))
        try:
            # permanent, so that no outer layer (the applier) retries the request again
            with pytest.raises(RetriesExhausted, match="gave up after 3 attempts") as raised:
                await store.describe()
            assert isinstance(raised.value, PermanentError)
            assert not isinstance(raised.value, TransientError)
            assert store.retries == {"connection refused or unreachable": 2}
        finally:
            await store.close()

    anyio.run(main)


@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("2", 2.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("9999", 60.0),
    ("soon", None), ("nan", None),
])
def test_retry_after_values(header: str | None, expected: float | None) -> None:
    assert retry_after(header, 60.0) == expected


def test_retry_after_http_dates() -> None:
    future = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 20 <= (retry_after(future, 60.0) or 0) <= 30
    past = format_datetime(datetime(2020, 1, 1, tzinfo=timezone.utc), usegmt=True)
    assert retry_after(past, 60.0) == 0.0
