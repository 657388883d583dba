"""`syncd serve` under attack (issue 10, points 17–24), against real servers on loopback.

Each section is one point of the review: keys that cannot be addressed (17), tokens in query
strings (18), slow and silent connections (19), clients that vanish mid-body (20), tokens
that are not printable ASCII (21), errors the request caused (22), the entity allowlist and
the public OpenAPI document (23), and the idempotency replays (24).
"""
from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec
import pytest

import world as world_module
from conftest import SYNCD, run_process
from http_fixtures import READ_TOKEN, TOKEN, Server, http_world, start_server
from syncd import wire
from syncd.errors import StoreError
from syncd.schema import Column, Entity
from syncd.server.errors import ApiError
from syncd.server.replay import Replays
from syncd.stores.http import HttpStore

OTHER = "tok-rw-other-5d1e9b7c3a2f4e6d8b0a1c3e"  # a second read-write token
EXTRA_TABLES = """
CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER) STRICT;
CREATE TABLE checked (id TEXT PRIMARY KEY, n INTEGER CHECK (n > 0));
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, world_module.World]]:
    w = world_module.build_world(tmp_path_factory.mktemp("hard") / "w", videos=3, files=False)
    with sqlite3.connect(w.dev_db) as conn:
        conn.executescript(EXTRA_TABLES)
    server = start_server(w.config, "dev", "--max-page", "2",
                          environ={"SYNCD_SERVE_TOKENS": f"{TOKEN},{OTHER}"})
    yield server, w
    assert server.stop() in (0, -15), server.output()
    assert "Traceback" not in server.output()


def client(server: Server, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                        timeout=10)


def post(api: httpx.Client, path: str, body: Any, **kw: Any) -> httpx.Response:
    return api.post(f"/v1/entities/{path}", json=body, **kw)


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = msgspec.json.decode(response.content, type=wire.ErrorBody)
    assert body.message and "\n" not in body.message
    return body.message


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


DEVICE = ["id", "device_no", "model", "registered_at"]


# -- 17. keys that cannot be addressed ------------------------------------------------------------

@pytest.mark.parametrize("key", [None, 1.5, {"$bytes": "eA=="}])
def test_create_refuses_a_null_float_or_blob_key(served: tuple[Server, world_module.World],
                                                  key: Any) -> None:
    server, w = served
    before = count(w.dev_db, "SELECT count(*) FROM devices")
    with client(server) as api:
        message = error(post(api, "devices/create",
                             {"columns": DEVICE, "rows": [[key, f"NK-{key!r}", None, None]]}), 422)
    assert "'id'" in message
    assert count(w.dev_db, "SELECT count(*) FROM devices") == before


def test_paging_skips_null_keys_and_ends(served: tuple[Server, world_module.World]) -> None:
    server, w = served
    with sqlite3.connect(w.dev_db) as conn:  # as an older server or another tool left them
        conn.executemany("INSERT INTO devices (id, device_no) VALUES (NULL, ?)",
                         [("NULL-1",), ("NULL-2",), ("NULL-3",)])
        expected = [r[0] for r in conn.execute(
            "SELECT id FROM devices WHERE id IS NOT NULL ORDER BY id")]
    seen: list[Any] = []
    after = None
    with client(server) as api:
        for _ in range(100):  # bounded: the old server answered the same page forever
            rows = post(api, "devices/select", {"columns": ["id"], "limit": 2,
                                                "after": after}).json()["rows"]
            seen += [r[0] for r in rows]
            if len(rows) < 2:
                break
            after = rows[-1][0]
    assert seen == expected


def test_copy_from_a_server_holding_null_keys_ends(tmp_path: Path) -> None:
    hw = http_world(tmp_path / "w", videos=2, behind=("prod",), serve_args=("--max-page", "2"),
                    files=False)
    try:
        with sqlite3.connect(hw.world.prod_db) as conn:
            conn.executemany("INSERT INTO devices (id, device_no) VALUES (NULL, ?)",
                             [("NULL-1",), ("NULL-2",), ("NULL-3",)])
        result = run_process(hw.world, "copy", "-s", "prod", "-t", "dev", "--entity", "devices",
                             "--yes", "--json", timeout=90)
    finally:
        hw.stop()
    assert result.code == 0, result.stderr
    assert count(hw.world.dev_db, "SELECT count(*) FROM devices WHERE id IS NULL") == 0


# -- 18. tokens in query strings --------------------------------------------------------------------

def test_a_token_in_the_query_string_is_refused_and_never_logged(
        served: tuple[Server, world_module.World]) -> None:
    server = served[0]
    for name in ("access_token", "token"):
        response = httpx.get(f"{server.url}/v1/schema?{name}={TOKEN}", timeout=10)
        error(response, 401)
    deadline = time.monotonic() + 5
    while "GET /v1/schema" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "GET /v1/schema" in server.output()  # the access log is on...
    assert TOKEN not in server.output()  # ...and holds no token


# -- 19. silent, slow and idle connections ------------------------------------------------------------

SHORT = ("--header-timeout", "1", "--body-timeout", "1", "--keep-alive", "1",
         "--max-connections", "4")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    w = world_module.build_world(tmp_path_factory.mktemp("strict") / "w", videos=1, files=False)
    server = start_server(w.config, "dev", *SHORT)
    yield server
    server.stop()
    assert "Traceback" not in server.output()


def connect(server: Server) -> socket.socket:
    url = urlsplit(server.url)
    return socket.create_connection((url.hostname, url.port), timeout=5)


def until_closed(sock: socket.socket, limit: float = 5.0) -> tuple[bytes, float]:
    """What the server sent, and the seconds until it closed the connection (inf: it did not)."""
    start, received = time.monotonic(), b""
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, float("inf")
    except ConnectionResetError:
        pass
    return received, time.monotonic() - start


def test_a_silent_connection_is_closed(strict: Server) -> None:
    with connect(strict) as sock:
        received, seconds = until_closed(sock)
    assert received == b"" and seconds < 3


def test_headers_dripping_in_are_cut_off(strict: Server) -> None:
    with connect(strict) as sock:
        start = time.monotonic()
        closed = False
        for byte in b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:  # bounded
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        if not closed:
            assert until_closed(sock, 1)[1] < 1
        assert time.monotonic() - start < 4.5


def test_a_body_that_stops_coming_gets_408(strict: Server) -> None:
    with connect(strict) as sock:
        sock.sendall(b"POST /v1/entities/devices/create HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"col")
        received, seconds = until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert seconds < 3


def test_a_body_dripping_in_after_an_early_answer_is_cut_off(strict: Server) -> None:
    """401 before the body is read; the rest may not hold the connection either."""
    with connect(strict) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /v1/entities/devices/create HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        closed = False
        for _ in range(60):  # bounded: 6 s of dripping at most
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        assert closed and time.monotonic() - start < 5


def test_an_idle_keep_alive_connection_is_closed(strict: Server) -> None:
    with connect(strict) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        received, seconds = until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ") and seconds < 3


def test_connections_beyond_the_limit_get_503(strict: Server) -> None:
    idle = [connect(strict) for _ in range(4)]
    try:
        time.sleep(0.3)  # accepted by the server
        assert httpx.get(f"{strict.url}/v1/health", timeout=5).status_code == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(f"{strict.url}/v1/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


# -- 20. a client that vanishes mid-body ---------------------------------------------------------------

def test_a_client_gone_mid_body_is_one_log_line(served: tuple[Server, world_module.World]) -> None:
    server = served[0]
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/entities/devices/create?secret=1 HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"columns\": [")
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while "disconnected" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in server.output().splitlines() if "disconnected" in line]
    assert len(lines) == 1, server.output()
    assert "POST /v1/entities/devices/create" in lines[0] and "secret" not in lines[0]
    assert "internal error" not in server.output() and "Traceback" not in server.output()


# -- 21. tokens that are not printable ASCII ---------------------------------------------------------------

def serve_fails(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_SERVE_")}
    return subprocess.run([str(SYNCD), "--config", str(config), "serve", "prod", "--port", "0",
                           *args], capture_output=True, text=True, timeout=30, env={**base, **env})


@pytest.mark.parametrize("bad", ["tok-é-0123456789abcdef", "tok-\x07-0123456789abcdef",
                                 "tok with spaces 0123456789"])
def test_a_token_that_is_not_printable_ascii_is_refused(tmp_path: Path, bad: str) -> None:
    w = world_module.build_world(tmp_path / "w", videos=1, files=False)
    result = serve_fails(w.config, env={"SYNCD_SERVE_READ_TOKENS": f"{READ_TOKEN},{bad}"})
    assert result.returncode == 2, result.stderr
    line, = result.stderr.strip().splitlines()
    assert "$SYNCD_SERVE_READ_TOKENS" in line and "ASCII" in line and bad not in line
    if " " in bad:
        return  # in a tokens file, spaces separate a token from its access
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n{bad} read-only\n", encoding="utf-8")
    tokens.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = serve_fails(w.config, "--tokens-file", str(tokens), env={})
    assert result.returncode == 2, result.stderr
    line, = result.stderr.strip().splitlines()
    assert "line 2" in line and "ASCII" in line and bad not in line


# -- 22. errors the request caused: 422 naming the field; constraints 409 without DDL --------------------

def test_a_bad_json_path_is_422_naming_the_field(served: tuple[Server, world_module.World]) -> None:
    with sqlite3.connect(served[1].dev_db) as conn:  # SQLite parses the path once per row
        conn.execute("INSERT OR IGNORE INTO videos (id, collection_meta) VALUES ('v-json', '{}')")
    body = {"columns": ["id"], "limit": 1,
            "filters": [{"column": "collection_meta", "path": ["a\x00b"], "op": "eq", "value": 1}]}
    with client(served[0]) as api:
        message = error(post(api, "videos/select", body), 422)
    assert "collection_meta.a" in message and "sqlite" not in message.lower()


def test_a_value_of_the_wrong_type_is_422_naming_the_field(
        served: tuple[Server, world_module.World]) -> None:
    with client(served[0]) as api:
        key = error(post(api, "counters/create", {"columns": ["id", "n"], "rows": [["abc", 1]]}), 422)
        assert "'id'" in key and "sqlite" not in key.lower()
        value = error(post(api, "counters/create", {"columns": ["id", "n"], "rows": [[7, "x"]]}), 422)
        assert "'n'" in value and "sqlite" not in value.lower()
        assert post(api, "counters/create", {"columns": ["id", "n"],
                                             "rows": [[7, 1]]}).json() == {"outcomes": ["created"]}


def test_a_constraint_failure_stays_409_without_ddl(served: tuple[Server, world_module.World]) -> None:
    with client(served[0]) as api:
        message = error(post(api, "checked/create", {"columns": ["id", "n"], "rows": [["c", -1]]}), 409)
    assert "CHECK" in message and "n > 0" not in message


# -- 23. the allowlist; the public document names no entity -----------------------------------------------

def allowlisted(w: world_module.World, names: str) -> Path:
    config = w.root / "allow.toml"
    config.write_text(w.config.read_text().replace(
        'records = "sqlite:///dev.db"', f'records = "sqlite:///dev.db"\nserve_entities = {names}'))
    return config


def test_serve_entities_limits_what_is_served(tmp_path: Path) -> None:
    w = world_module.build_world(tmp_path / "w", videos=2, files=False)
    server = start_server(allowlisted(w, '["devices", "vendors"]'), "dev")
    try:
        with client(server) as api:
            assert {t["name"] for t in api.get("/v1/schema").json()["tables"]} == {"devices", "vendors"}
            assert post(api, "devices/select", {"columns": ["id"], "limit": 1}).status_code == 200
            error(post(api, "videos/select", {"columns": ["id"], "limit": 1}), 404)
            error(post(api, "videos/create", {"columns": ["id"], "rows": [["v-x"]]}), 404)
            listed = api.get("/v1/openapi.json").json()["paths"]
        param = listed["/v1/entities/{entity}/select"]["post"]["parameters"][0]
        assert param["schema"]["enum"] == ["devices", "vendors"]  # a token holder sees them
    finally:
        server.stop()


def test_unknown_serve_entities_refuse_to_start(tmp_path: Path) -> None:
    w = world_module.build_world(tmp_path / "w", videos=1, files=False)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_SERVE_")}
    result = subprocess.run([str(SYNCD), "--config", str(allowlisted(w, '["devices", "nope"]')),
                             "serve", "dev", "--port", "0"], capture_output=True, text=True,
                            timeout=30, env={**base, "SYNCD_SERVE_TOKENS": TOKEN})
    assert result.returncode == 2, result.stderr
    line, = result.stderr.strip().splitlines()
    assert "serve_entities" in line and "'nope'" in line


def test_the_public_document_names_no_entity(served: tuple[Server, world_module.World]) -> None:
    text = httpx.get(f"{served[0].url}/v1/openapi.json", timeout=10).text
    for table in world_module.TABLES + ("counters", "checked"):
        assert f'"{table}"' not in text


# -- 24. idempotency replays: per token, by time -----------------------------------------------------------

def test_one_token_cannot_evict_another_tokens_answers(served: tuple[Server, world_module.World]) -> None:
    server = served[0]
    first_body = {"columns": DEVICE, "rows": [["replay-a", "REPLAY-A", None, None]]}
    with client(server) as mine, client(server, OTHER) as other:
        first = post(mine, "devices/create", first_body, headers={"Idempotency-Key": "mine-1"})
        assert first.json() == {"outcomes": ["created"]}
        for i in range(80):  # more than the old shared cache of 64 held
            post(other, "devices/create", {"columns": DEVICE,
                                           "rows": [[f"flood-{i}", f"FLOOD-{i}", None, None]]},
                 headers={"Idempotency-Key": f"flood-{i}"})
        retried = post(mine, "devices/create", first_body, headers={"Idempotency-Key": "mine-1"})
    assert retried.json() == {"outcomes": ["created"]}  # the first answer, not "skipped"


def test_replays_last_the_window_and_are_bounded_per_token() -> None:
    now = [1000.0]
    replays = Replays(window=60.0, keep=2, clock=lambda: now[0])
    answers = iter([b"first", b"second", b"third", b"fourth"])

    async def write() -> bytes:
        return next(answers)

    async def main() -> None:
        assert await replays.run("a", "k1", b"body", write) == b"first"
        now[0] += 59
        assert await replays.run("a", "k1", b"body", write) == b"first"  # within the window
        assert await replays.run("a", "k2", b"body", write) == b"second"
        with pytest.raises(ApiError) as full:  # a third answer would evict one still in its window
            await replays.run("a", "k3", b"body", write)
        assert full.value.status == 429 and full.value.headers["Retry-After"] == "1"
        assert await replays.run("b", "k3", b"body", write) == b"third"  # other tokens unaffected
        now[0] += 2  # k1's window is over: it is forgotten, and there is room again
        assert await replays.run("a", "k1", b"body", write) == b"fourth"

    anyio.run(main)


# -- 17, client side: a cursor that does not move stops the client -----------------------------------------

class _StuckServer:
    """A loopback server whose select answers the same full page forever (as a buggy server)."""

    def __init__(self) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        schema = wire.SchemaResponse(tables=[wire.Table(
            name="things", columns=[wire.Column(name="id", type="TEXT", notnull=False, is_json=False)],
            primary_key=["id"], foreign_keys=[])], access="read-only",
            limits=wire.Limits(max_body_bytes=1 << 20, max_page=2))

        async def describe(_request: Any) -> Response:
            return Response(msgspec.json.encode(schema), media_type="application/json")

        async def select(_request: Any) -> Response:
            return Response(b'{"columns": ["id"], "rows": [[null], [null]]}',
                            media_type="application/json")

        app = Starlette(routes=[Route("/v1/schema", describe),
                                Route("/v1/entities/things/select", select, methods=["POST"])])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def test_the_client_stops_when_the_cursor_does_not_move() -> None:
    stuck = _StuckServer()
    things = Entity("things", "id", ("id",), {"id": Column("id", "TEXT", False, False)})

    async def main() -> None:
        store = HttpStore("stuck", stuck.url, TOKEN, readonly=True)
        try:
            with anyio.fail_after(10), pytest.raises(StoreError) as info:
                await store.select_page(things, [], None, sys.maxsize)
            assert "cursor" in str(info.value)
        finally:
            await store.close()

    try:
        anyio.run(main)
    finally:
        stuck.stop()
