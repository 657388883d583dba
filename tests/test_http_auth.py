"""Tokens: where the server gets them, how the client presents them, and that they leak nowhere."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

import world as world_module
from conftest import SYNCD, run, run_process, snapshot
from http_fixtures import READ_TOKEN, TOKEN, TOKEN_VAR, http_world, start_server

TRANSFER = ("transfer", "-s", "prod", "-t", "dev", "--yes", "--json")


def serve_fails(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_SERVE_")}
    return subprocess.run([str(SYNCD), "--config", str(config), "serve", "prod", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, env={**base, **env})


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- the server's tokens ------------------------------------------------------------------------

def test_serve_refuses_to_start_without_good_tokens(tmp_path: Path) -> None:
    w = world_module.build_world(tmp_path / "w", videos=1, files=False)
    no_tokens = serve_fails(w.config, env={})
    assert no_tokens.returncode == 2
    assert "no tokens" in one_line(no_tokens.stderr)
    short = serve_fails(w.config, env={"SYNCD_SERVE_TOKENS": "short"})
    assert short.returncode == 2 and "at least 16 characters" in one_line(short.stderr)
    assert "short" not in short.stderr.replace("at least", "")  # the token is never quoted
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    tokens.chmod(0o644)
    shared = serve_fails(w.config, "--tokens-file", str(tokens), env={})
    assert shared.returncode == 2 and "chmod 600" in one_line(shared.stderr)
    assert TOKEN not in shared.stderr
    tokens.chmod(0o600)
    tokens.write_text(f"{TOKEN} admin\n")
    bad = serve_fails(w.config, "--tokens-file", str(tokens), env={})
    assert bad.returncode == 2 and "line 1" in one_line(bad.stderr) and TOKEN not in bad.stderr
    sqlite_only = w.config.with_name("http.toml")
    sqlite_only.write_text('[environments.prod]\nrecords = "http://127.0.0.1:1"\ntoken = "${X}"\n')
    remote = serve_fails(sqlite_only, env={"SYNCD_SERVE_TOKENS": TOKEN, "X": TOKEN})
    assert remote.returncode == 2 and "environment 'prod' is an HTTP environment; syncd serve serves SQLite or Postgres environments" in one_line(remote.stderr)


def test_tokens_file_with_read_only_tokens(tmp_path: Path) -> None:
    w = world_module.build_world(tmp_path / "w", videos=1, files=False)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# comment\n{TOKEN}   # the sync machine\n{READ_TOKEN} read-only\n")
    tokens.chmod(stat.S_IRUSR | stat.S_IWUSR)
    server = start_server(w.config, "prod", "--tokens-file", str(tokens),
                          environ={"SYNCD_SERVE_TOKENS": "", "SYNCD_SERVE_READ_TOKENS": ""})
    try:
        def access(token: str) -> httpx.Response:
            return httpx.get(f"{server.url}/v1/schema", headers={"Authorization": f"Bearer {token}"})

        assert access(TOKEN).json()["access"] == "read-write"
        assert access(READ_TOKEN).json()["access"] == "read-only"
        assert access("x" * 40).status_code == 401
    finally:
        server.stop()


def test_read_only_server_refuses_every_write(tmp_path: Path) -> None:
    w = world_module.build_world(tmp_path / "w", videos=1, files=False)
    server = start_server(w.config, "dev", "--read-only")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{server.url}/v1/schema", headers=headers).json()["access"] == "read-only"
        created = httpx.post(f"{server.url}/v1/entities/vendors/create", headers=headers,
                             json={"columns": ["id", "name"], "rows": [["v", "V"]]})
        assert created.status_code == 403
    finally:
        server.stop()


# -- the client's token: an input error before any write ------------------------------------------

@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    hw = http_world(tmp_path / "w", videos=3, behind=("prod", "dev"))
    yield hw
    hw.stop()


def test_missing_token_variable_is_an_input_error(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    w = served.world
    before = snapshot(w)
    monkeypatch.delenv(TOKEN_VAR)
    result = run(w, *TRANSFER)
    assert result.code == 2
    assert one_line(result.stderr) == ("syncd: error: environments.prod.token: "
                                       f"environment variable {TOKEN_VAR} is not set")
    assert snapshot(w) == before and not (w.root / "journal.db").exists()


@pytest.mark.parametrize("wrong", ["wrong-token-0123456789abcdef", READ_TOKEN])
def test_rejected_or_read_only_token_fails_before_any_write(served, wrong: str) -> None:  # type: ignore[no-untyped-def]
    """A wrong token (401) anywhere, or a read-only one for the target: exit 2, one line."""
    w = served.world
    before = snapshot(w)
    result = run_process(w, *TRANSFER, env={TOKEN_VAR: wrong})
    assert result.code == 2, result.stderr
    line = one_line(result.stderr)
    if wrong == READ_TOKEN:  # fine for reading the source, not for writing the target
        assert line == ("syncd: error: environment 'dev': the token is read-only; "
                        "writing needs a read-write token")
    else:
        assert line.startswith("syncd: error: environment 'prod': the token was rejected by http://")
        assert line.endswith("(401: invalid token)")
    assert wrong not in result.stderr and wrong not in result.stdout
    assert snapshot(w) == before and not (w.root / "journal.db").exists()
    assert "ConnectError" not in result.stderr


# -- secrets never reach the journal, logs or output ----------------------------------------------

def test_token_appears_nowhere(tmp_path: Path) -> None:
    hw = http_world(tmp_path / "w", videos=4, behind=("prod", "dev"), faults_every=8, timeout=1.5)
    w = hw.world
    outputs: list[str] = []
    try:
        for args in [TRANSFER + ("--copy-files", "-v"),
                     ("transfer", "-s", "prod", "-t", "dev", "--dry-run", "-v"),
                     ("copy", "-s", "prod", "-t", "dev", "--entity", "devices", "--plan-only")]:
            result = run_process(w, *args)
            assert result.code == 0, result.stderr
            outputs += [result.stdout, result.stderr]
        run_id = run(w, "runs", "--json").json()[0]["run_id"]
        for args in [("runs",), ("runs", "--json"), ("show", run_id, "-v", "--json"),
                     ("log", "--json"), ("schema", "prod", "--json"), ("journal", "verify"),
                     ("resume", run_id, "--yes")]:
            result = run_process(w, *args)
            assert result.code == 0, (args, result.stderr)
            outputs += [result.stdout, result.stderr]
        wrong = run_process(w, *TRANSFER, env={TOKEN_VAR: "not-the-token-0123456789"})
        outputs += [wrong.stdout, wrong.stderr]
    finally:
        hw.stop()
    logs = hw.logs()
    assert "POST /v1/entities/videos/create" in logs  # the access log is there...
    assert "retry" in "".join(outputs)  # ...and the retries were reported
    journal = b"".join(p.read_bytes() for p in w.root.glob("journal.db*") if p.is_file())
    assert len(journal) > 10_000
    for secret in (TOKEN, READ_TOKEN):  # ...and no secret is anywhere
        for encoded in (secret.encode(), secret.encode("utf-16-le")):
            assert encoded not in journal
        assert secret not in logs
        assert all(secret not in text for text in outputs)
        for path in w.root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_a_dry_run_needs_only_a_read_only_token(served) -> None:  # type: ignore[no-untyped-def]
    """A dry run only reads the target too, so a read-only token is enough for it."""
    w = served.world
    before = snapshot(w)
    result = run_process(w, *TRANSFER, "--dry-run", "--json", env={TOKEN_VAR: READ_TOKEN})
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "dry_run"
    assert snapshot(w) == before and not (w.root / "journal.db").exists()
