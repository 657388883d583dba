"""HTTP environments in syncd.toml: `records = "https://…"` and `token = "${VAR}"`."""
from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import load_config, token_value
from syncd.errors import ConfigError

SECRET = "s3cr3t-value-0123456789"


def load(tmp_path: Path, body: str) -> object:
    path = tmp_path / "syncd.toml"
    path.write_text(body)
    return load_config(str(path))


def error_of(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body)
    message = str(info.value)
    assert "\n" not in message and SECRET not in message
    return message


def test_token_is_expanded_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_TOKEN", SECRET)
    config = load(tmp_path, '[environments.dev]\nrecords = "https://dev.example.org/api/"\n'
                            'token = "${DEV_TOKEN}"\ntimeout = 5\n')
    dev = config.environment("dev")  # type: ignore[attr-defined]
    assert dev.records == "https://dev.example.org/api"
    assert token_value("dev", dev) == SECRET and dev.timeout == 5.0
    assert SECRET not in repr(dev) and SECRET not in repr(config) and SECRET not in str(dev)


@pytest.mark.parametrize("env_line, expected", [
    ("", "environments.dev.token: required for an HTTP record store"),
    (f'token = "{SECRET}"', 'environments.dev.token: write it as "${VAR}"'),
    ('token = "$DEV_TOKEN"', 'environments.dev.token: write it as "${VAR}"'),
    ('token = 42', "environments.dev.token: Expected `str | null`, got `int`"),
    ('token = "${DEV_TOKEN}"\ntimeout = 0', "environments.dev.timeout: must be more than 0 seconds"),
])
def test_token_and_timeout_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                env_line: str, expected: str) -> None:
    monkeypatch.setenv("DEV_TOKEN", SECRET)
    monkeypatch.setenv("EMPTY_TOKEN", "")
    message = error_of(tmp_path, f'[environments.dev]\nrecords = "http://127.0.0.1:8787"\n{env_line}\n')
    assert expected in message


@pytest.mark.parametrize("variable", ["NOT_SET_ANYWHERE", "EMPTY_TOKEN"])
def test_a_missing_variable_fails_only_when_the_store_is_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv("EMPTY_TOKEN", "")
    config = load(tmp_path, '[environments.dev]\nrecords = "http://127.0.0.1:8787"\n'
                            f'token = "${{{variable}}}"\n')  # loads: `syncd runs` needs no token
    with pytest.raises(ConfigError, match=f"environments.dev.token: environment variable "
                                          f"{variable} is not set"):
        token_value("dev", config.environment("dev"))  # type: ignore[attr-defined]


@pytest.mark.parametrize("records, expected", [
    ("https://", "names no host"),
    ("https://user:pw@dev.example.org", "no credentials in the URL"),
    ("https://dev.example.org/api?x=1", "must not have a query"),
    ("http://dev.example.org:99999", "invalid port"),
    ("mysql://db/x", "unsupported record store URL"),
])
def test_http_urls_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, records: str,
                               expected: str) -> None:
    monkeypatch.setenv("DEV_TOKEN", SECRET)
    message = error_of(tmp_path, f'[environments.dev]\nrecords = "{records}"\ntoken = "${{DEV_TOKEN}}"\n')
    assert "environments.dev.records" in message and expected in message


def test_sqlite_environments_take_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_TOKEN", SECRET)
    message = error_of(tmp_path, '[environments.dev]\nrecords = "sqlite:///dev.db"\ntoken = "${DEV_TOKEN}"\n')
    assert "environments.dev.token: only HTTP record stores take a token" in message
