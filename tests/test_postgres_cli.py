"""Postgres environments from the command line: bad input stops before any write (exit 2, one
line naming the problem), passwords come from the process environment only, and `syncd serve`
serves a Postgres environment."""
from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg_world
import world as world_module
from conftest import run
from http_fixtures import client_config, start_server
from syncd.config import load_config


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[world_module.World, str]]:
    w = world_module.build_world(tmp_path_factory.mktemp("pg-cli") / "w", videos=10, files=False)
    dev = pg_world.load_world(w, "dev", extra=False)
    try:
        yield w, dev
    finally:
        pg_world.drop_database(dev)


def with_dev(w: world_module.World, tmp: Path, records: str, extra: str = "") -> world_module.World:
    config = tmp / "syncd.toml"
    text = w.config.read_text().replace('records = "sqlite:///prod.db"',
                                        f'records = "sqlite:///{w.prod_db}"')
    text = text.replace('records = "sqlite:///dev.db"', f'records = "{records}"\n{extra}')
    config.write_text(text)
    return dataclasses.replace(w, config=config)


def counts(db: str) -> list[tuple[int, ...]]:
    return pg_world.execute(db, "SELECT (SELECT count(*) FROM videos), (SELECT count(*) FROM devices)")


@pytest.mark.parametrize(("records", "extra", "args", "message"), [
    ("{url}", 'password = "hunter2"', (),
     'environments.dev.password: write it as "${VAR}"'),
    ("postgresql://postgres:hunter2@127.0.0.1:5432/{db}", "", (), "no password in the URL"),
    ("{url}", 'password = "${SYNCD_TEST_NO_SUCH_VAR}"', (),
     "environments.dev.password: environment variable SYNCD_TEST_NO_SUCH_VAR is not set"),
    ("postgresql://postgres@127.0.0.1:1/{db}", "", (),
     "environment 'dev': cannot connect to 127.0.0.1:1/"),
    ("postgresql://postgres@127.0.0.1:5432/syncd_no_such_db", "", (),
     'database "syncd_no_such_db" does not exist'),
    ("postgresql://syncd_no_role@127.0.0.1:5432/{db}", "", (), 'role "syncd_no_role"'),
    ("{url}?schema=nope", "", (), "environment 'dev': schema 'nope' does not exist"),
    ("postgresql://postgres@127.0.0.1:5432/{db}?sslmod=disable", "", (), "unknown query parameter"),
    ("{url}", "", ("-f", "nope:eq:1"), "unknown field 'nope'"),
    ("{url}", "", ("-f", "collection_meta.x.y:zz:1"), "unknown filter op"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
        base: tuple[world_module.World, str], tmp_path: Path, records: str, extra: str,
        args: tuple[str, ...], message: str) -> None:
    w, dev = base
    before = counts(dev)
    cw = with_dev(w, tmp_path, records.format(url=pg_world.url(dev), db=dev), extra)
    result = run(cw, "transfer", "-s", "prod", "-t", "dev", "--yes", *args)
    assert result.code == 2, (result.code, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert "hunter2" not in result.stderr
    assert not (tmp_path / "journal.db").exists()
    assert counts(dev) == before


def test_the_password_is_read_when_the_store_opens_and_never_shown(
        base: tuple[world_module.World, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    w, dev = base
    cw = with_dev(w, tmp_path, pg_world.url(dev), 'password = "${SYNCD_TEST_PG_PASSWORD}"')
    monkeypatch.setenv("SYNCD_TEST_PG_PASSWORD", "s3cret-pw")  # trust auth: any password passes
    env = load_config(str(cw.config)).environment("dev")
    assert "s3cret-pw" not in repr(env) and env.password == "${SYNCD_TEST_PG_PASSWORD}"
    result = run(cw, "transfer", "-s", "prod", "-t", "dev", "--dry-run", "--json")
    assert result.code == 0, result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_schema_of_a_postgres_environment(base: tuple[world_module.World, str],
                                          tmp_path: Path) -> None:
    """Keys, SQL foreign keys and dot paths into jsonb, in the same order as SQLite's."""
    w, dev = base
    cw = with_dev(w, tmp_path, pg_world.url(dev))
    got, want = run(cw, "schema", "dev", "--json"), run(cw, "schema", "prod", "--json")
    assert got.code == 0, got.stderr
    assert {**got.json(), "environment": "prod"} == want.json()


def test_serve_serves_a_postgres_environment(tmp_path: Path) -> None:
    w = world_module.build_world(tmp_path / "w", videos=10, files=False)
    original = w.config.read_text()
    prod = pg_world.load_world(w, "prod", extra=False)
    server = None
    try:
        pg_world.point_config(w, "prod", prod)
        server = start_server(w.config, "prod")
        client = tmp_path / "w" / "client.toml"
        client.write_text(client_config(original, {"prod": server.url}))
        cw = dataclasses.replace(w, config=client)
        result = run(cw, "transfer", "-s", "prod", "-t", "dev", "-l", "3", "--yes", "--json")
        assert result.code == 0, result.stderr
        assert result.json()["applied"]["entities"]["videos"]["created"] == 3
        with sqlite3.connect(w.dev_db) as conn:
            got = [r[0] for r in conn.execute("SELECT id FROM videos ORDER BY id")]
        assert got == (w.video_ids or [])[:3]
        assert "/v1/entities/" in server.output()
    finally:
        if server:
            server.stop()
        pg_world.drop_database(prod)
