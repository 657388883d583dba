"""The record API's contract, spoken directly over HTTP to a real `syncd serve` process."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterator

import httpx
import msgspec
import pytest

import world as world_module
from http_fixtures import READ_TOKEN, TOKEN, Server, start_server
from syncd import wire
from syncd.server.openapi import document

MAX_PAGE, MAX_BODY = 50, 64 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, world_module.World]]:
    w = world_module.build_world(tmp_path_factory.mktemp("api") / "w", videos=30, files=False)
    server = start_server(w.config, "dev", "--max-page", str(MAX_PAGE), "--max-body", str(MAX_BODY))
    yield server, w
    assert server.stop() in (0, -15), server.output()
    assert "Traceback" not in server.output()


@pytest.fixture
def api(served: tuple[Server, world_module.World]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0].url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def post(client: httpx.Client, path: str, body: Any, **kw: Any) -> httpx.Response:
    return client.post(f"/v1/entities/{path}", json=body, **kw)


def error(response: httpx.Response, status: int) -> str:
    """The response has this status and a JSON error body; its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = msgspec.json.decode(response.content, type=wire.ErrorBody)
    assert body.error and body.message and "\n" not in body.message
    return body.message


DEVICE_COLUMNS = ["id", "device_no", "model", "registered_at"]


def device(i: int) -> list[Any]:
    return [f"api-device-{i:04d}", f"API-{i:04d}", "GX-100", None]


# -- auth ---------------------------------------------------------------------------------------

def test_health_and_openapi_need_no_token(served: tuple[Server, world_module.World]) -> None:
    url = served[0].url
    assert httpx.get(f"{url}/v1/health").json() == {"status": "ok"}
    doc = httpx.get(f"{url}/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789abcdef", f"Basic {TOKEN}",
                                    "Bearer", f"Bearer {TOKEN}x"])
def test_no_or_wrong_token_is_401(served: tuple[Server, world_module.World], header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for method, path in (("GET", "/v1/schema"), ("POST", "/v1/entities/devices/select"),
                         ("POST", "/v1/entities/devices/create"), ("POST", "/v1/entities/nope/fetch")):
        response = httpx.request(method, served[0].url + path, headers=headers, json={})
        error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_read_only_token_reads_but_never_writes(served: tuple[Server, world_module.World]) -> None:
    w = served[1]
    with httpx.Client(base_url=served[0].url, headers={"Authorization": f"Bearer {READ_TOKEN}"}) as ro:
        assert ro.get("/v1/schema").json()["access"] == "read-only"
        assert post(ro, "devices/existing", {"keys": ["x"]}).status_code == 200
        before = _count(w.dev_db, "devices")
        assert "read-only" in error(post(ro, "devices/create", {"columns": DEVICE_COLUMNS,
                                                                "rows": [device(1)]}), 403)
        error(post(ro, "devices/update", {"patches": [{"key": "x", "fields": {"model": "y"}}]}), 403)
        error(post(ro, "devices/delete", {"keys": ["x"]}), 403)
        assert _count(w.dev_db, "devices") == before


def test_read_write_token_has_read_write_access(api: httpx.Client) -> None:
    answer = msgspec.json.decode(api.get("/v1/schema").content, type=wire.SchemaResponse)
    assert answer.access == "read-write"
    assert answer.limits == wire.Limits(max_body_bytes=MAX_BODY, max_page=MAX_PAGE)
    videos = next(t for t in answer.tables if t.name == "videos")
    assert videos.primary_key == ["id"]
    assert ("location_id", "locations", "id") in {(f.column, f.table, f.other_column)
                                                   for f in videos.foreign_keys}
    assert {c.name for c in videos.columns if c.is_json} == {"collection_meta", "storage_meta"}


# -- bad input is a 4xx with a JSON body, never a 500 -------------------------------------------

@pytest.mark.parametrize("path, body, status, words", [
    ("nope/select", {"columns": ["id"], "limit": 1}, 404, "no entity 'nope'"),
    ("devices/select", {"columns": ["id", "colour"], "limit": 1}, 422, "unknown field 'colour'"),
    ("devices/select", {"columns": ["id"], "limit": 0}, 422, "$.limit"),
    ("devices/select", {"columns": ["id"], "limit": MAX_PAGE + 1}, 422, "page size"),
    ("devices/select", {"columns": ["id"], "limit": 1, "colour": 1}, 422, "unknown field `colour`"),
    ("devices/select", {"columns": [], "limit": 1}, 422, "$.columns"),
    ("devices/select", {"columns": ["id"], "limit": 1,
                        "filters": [{"column": "model", "op": "in", "value": "GX"}]}, 422, "wrong shape"),
    ("devices/select", {"columns": ["id"], "limit": 1,
                        "filters": [{"column": "model", "op": "regex", "value": "GX"}]}, 422, "$.filters[0].op"),
    ("devices/select", {"columns": ["id"], "limit": 1,
                        "filters": [{"column": "model", "path": ["a"], "op": "eq", "value": 1}]},
     422, "not a JSON column"),
    ("devices/select", {"columns": ["id"], "limit": 1, "order_by": "model", "after": "x"}, 422,
     "[value, key]"),
    ("devices/fetch", {"columns": ["id"], "keys": [2**64]}, 422, "$.keys[0]"),
    ("devices/existing", {"keys": list(range(MAX_PAGE + 1))}, 422, "page size"),
    ("devices/create", {"columns": ["device_no"], "rows": [["x"]]}, 422, "key 'id'"),
    ("devices/create", {"columns": ["id", "id"], "rows": [["x", "x"]]}, 422, "twice"),
    ("devices/create", {"columns": ["id", "model"], "rows": [["x"]]}, 422, "2 values"),
    ("devices/create", {"columns": ["id", "model"], "rows": [["x", [1]]]}, 422, "$.rows[0][1]"),
    ("devices/update", {"patches": [{"key": "x", "fields": {"id": "y"}}]}, 422, "cannot be patched"),
    ("devices/update", {"patches": [{"key": "x", "fields": {}}]}, 422, "$.patches[0].fields"),
    ("devices/match", {"columns": ["device_no"], "values": [["a", "b"]]}, 422, "1 items"),
])
def test_bad_requests_are_named_4xx(api: httpx.Client, path: str, body: Any, status: int,
                                    words: str) -> None:
    assert words in error(post(api, path, body), status)


def test_malformed_json_is_400(api: httpx.Client) -> None:
    for content in (b"{", b"", b'{"columns": [', b"\xff\xfe"):
        assert "malformed JSON" in error(api.post("/v1/entities/devices/select", content=content), 400)


def test_body_over_the_limit_is_413(api: httpx.Client) -> None:
    huge = {"columns": DEVICE_COLUMNS, "rows": [device(1)[:1] + ["x" * MAX_BODY, None, None]]}
    error(post(api, "devices/create", huge), 413)
    chunked = iter([b'{"columns": ["id"], "rows": [["', b"x" * MAX_BODY, b'"]]}'])  # no Content-Length
    assert "over the limit" in error(api.post("/v1/entities/devices/create", content=chunked), 413)


def test_unknown_endpoint_and_method(api: httpx.Client) -> None:
    error(api.get("/v1/nothing"), 404)
    error(api.get("/v1/entities/devices/select"), 405)


def test_constraint_violation_is_409(api: httpx.Client, served: tuple[Server, world_module.World]) -> None:
    step = ["s-orphan", "no-such-video", "ingest", "done", None, None, None]
    columns = ["id", "video_id", "step", "status", "result_ref", "debug_ref", "created_at"]
    assert "FOREIGN KEY" in error(post(api, "video_steps/create", {"columns": columns, "rows": [step]}), 409)
    assert _count(served[1].dev_db, "video_steps") == 0


# -- writes ---------------------------------------------------------------------------------------

def test_create_is_create_if_absent_and_idempotency_keys_replay(api: httpx.Client) -> None:
    rows = [device(i) for i in range(10, 13)]
    body = {"columns": DEVICE_COLUMNS, "rows": rows}
    first = post(api, "devices/create", body, headers={"Idempotency-Key": "k-1"})
    assert first.json() == {"outcomes": ["created"] * 3}
    # the same write again: skipped (the rows exist), unless it is a retry of the first
    assert post(api, "devices/create", body).json() == {"outcomes": ["skipped"] * 3}
    retried = post(api, "devices/create", body, headers={"Idempotency-Key": "k-1"})
    assert retried.json() == first.json()
    other = {"columns": DEVICE_COLUMNS, "rows": [device(14)]}
    assert "already used" in error(post(api, "devices/create", other, headers={"Idempotency-Key": "k-1"}), 422)
    more = {"columns": DEVICE_COLUMNS, "rows": [device(12), device(13)]}
    assert post(api, "devices/create", more).json() == {"outcomes": ["skipped", "created"]}


def test_update_and_delete_report_per_key(api: httpx.Client, served: tuple[Server, world_module.World]) -> None:
    post(api, "devices/create", {"columns": DEVICE_COLUMNS, "rows": [device(20), device(21)]})
    patches = [{"key": "api-device-0020", "fields": {"model": "Orbit 3", "registered_at": "2025"}},
               {"key": "gone", "fields": {"model": "x"}}]
    assert post(api, "devices/update", {"patches": patches}).json() == {"outcomes": ["updated", "missing"]}
    with sqlite3.connect(served[1].dev_db) as conn:
        assert conn.execute("SELECT model, registered_at FROM devices WHERE id = 'api-device-0020'"
                            ).fetchone() == ("Orbit 3", "2025")
    keys = ["api-device-0020", "api-device-0021", "gone"]
    assert post(api, "devices/delete", {"keys": keys}).json() == {"outcomes": ["deleted", "deleted", "missing"]}
    assert post(api, "devices/existing", {"keys": keys}).json() == {"keys": []}


# -- reads ----------------------------------------------------------------------------------------

def test_select_pages_in_keyset_order(api: httpx.Client, served: tuple[Server, world_module.World]) -> None:
    w = served[1]
    with sqlite3.connect(w.dev_db) as conn:
        expected = [r[0] for r in conn.execute("SELECT id FROM devices ORDER BY id")]
    seen: list[str] = []
    after = None
    while True:
        page = post(api, "devices/select", {"columns": ["id"], "limit": 2, "after": after}).json()
        assert page["columns"] == ["id"]
        seen += [r[0] for r in page["rows"]]
        if len(page["rows"]) < 2:
            break
        after = page["rows"][-1][0]
    assert seen == expected and len(seen) > 2


def test_select_ordered_by_a_column_and_filters(api: httpx.Client, served: tuple[Server, world_module.World]) -> None:
    with sqlite3.connect(served[1].dev_db) as conn:
        expected = conn.execute("SELECT registered_at, id FROM devices WHERE registered_at IS NOT NULL "
                                "AND model != 'none' ORDER BY registered_at, id").fetchall()
    seen: list[list[Any]] = []
    after = None
    filters = [{"column": "model", "op": "ne", "value": "none"}]
    while True:
        page = post(api, "devices/select", {"columns": ["registered_at", "id"], "limit": 3,
                                            "after": after, "order_by": "registered_at",
                                            "filters": filters}).json()["rows"]
        seen += page
        if len(page) < 3:
            break
        after = page[-1]
    assert [tuple(r) for r in seen] == expected


def test_fetch_existing_and_match(api: httpx.Client, served: tuple[Server, world_module.World]) -> None:
    w = served[1]
    with sqlite3.connect(w.dev_db) as conn:
        devices = conn.execute("SELECT id, device_no FROM devices ORDER BY id").fetchall()
    keys = [d[0] for d in devices][::-1] + ["missing"]
    rows = post(api, "devices/fetch", {"columns": ["device_no", "id"], "keys": keys}).json()
    assert rows == {"columns": ["device_no", "id"], "rows": [[no, i] for i, no in devices]}
    assert set(post(api, "devices/existing", {"keys": keys}).json()["keys"]) == {d[0] for d in devices}
    wanted = [[devices[0][1]], ["DEV-nope"]]
    answer = post(api, "devices/match", {"columns": ["device_no"], "values": wanted}).json()
    assert answer == {"matches": [{"values": [devices[0][1]], "key": devices[0][0]}]}


# -- the document is true to the routes ---------------------------------------------------------------

def test_openapi_lists_exactly_the_served_routes(served: tuple[Server, world_module.World]) -> None:
    doc = httpx.get(f"{served[0].url}/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    operations = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert operations == {(e.method, wire.PREFIX + e.path) for e in wire.ENDPOINTS}
    entity = doc["paths"]["/v1/entities/{entity}/select"]["post"]["parameters"][0]
    assert "videos" in entity["schema"]["enum"]
    for method, path in operations:  # every documented operation is served (no 404/405)
        response = httpx.request(method, served[0].url + path.replace("{entity}", "videos"),
                                 headers={"Authorization": f"Bearer {TOKEN}"}, content=b"{}")
        assert response.status_code not in (404, 405), (method, path)
    assert document(["x"], wire.Limits(max_body_bytes=1, max_page=1))["components"]["schemas"]["Blob"]


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
