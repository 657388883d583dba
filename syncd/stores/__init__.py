"""Record stores by URL scheme: the one place that knows which adapter serves which URL.

Each adapter says how to check its URL when the config is loaded (no network, no heavy
import) and how to open a store for an environment (its module imported only then, so an
optional extra is needed only by the environments that use it). To add a backend: write the
module (the RecordStore port of `base.py`, the contract suite in tests/store_contract.py),
then register it below. See docs/architecture.md, "How to add a record store".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..config import http_base_url, password_value, sqlite_path, token_value
from ..errors import InputError
from ..registry import Registry
from .base import Patch, RecordStore, Row

if TYPE_CHECKING:
    from ..config import EnvironmentConfig

__all__ = ["RECORD_STORES", "Patch", "RecordStore", "Row", "StoreAdapter", "open_store"]

# (environment name, its config, the config file's folder, read-only?) → an open store
Opener = Callable[[str, "EnvironmentConfig", str, bool], RecordStore]


@dataclass(frozen=True)
class StoreAdapter:
    label: str  # for messages: "SQLite", "HTTP"
    check_url: Callable[[str, str], str]  # (url, base_dir) → canonical URL; ConfigError if bad
    open: Opener
    takes_token: bool = False  # the environment's `token = "${VAR}"` is required and used
    servable: bool = False  # `syncd serve` can put this store behind the HTTP API


RECORD_STORES: Registry[StoreAdapter] = Registry(
    "record store URL", "sqlite:///PATH or https://HOST/PATH")


def open_store(name: str, env: EnvironmentConfig, base_dir: str, *, readonly: bool) -> RecordStore:
    """The environment's record store. Network stores check access when first described."""
    return RECORD_STORES.for_url(env.records).open(name, env, base_dir, readonly)


def _extra(name: str, extra: str, exc: ImportError) -> InputError:
    return InputError(f"environment '{name}' needs the {extra} extra "
                      f"(pip install 'syncd[{extra}]'): {exc}")


def _open_sqlite(name: str, env: EnvironmentConfig, base_dir: str, readonly: bool) -> RecordStore:
    from .sqlite import SqliteStore
    return SqliteStore(name, sqlite_path(env.records, base_dir), readonly=readonly)


def _check_sqlite(url: str, base_dir: str) -> str:
    return "sqlite:///" + sqlite_path(url, base_dir).as_posix()  # absolute: the four-slash form


def _open_http(name: str, env: EnvironmentConfig, base_dir: str, readonly: bool) -> RecordStore:
    try:
        from .http import HttpOptions, HttpStore
    except ImportError as exc:
        raise _extra(name, "http", exc) from None
    return HttpStore(name, env.records, token_value(name, env), readonly=readonly,
                     options=HttpOptions(timeout=env.timeout))


RECORD_STORES.register(StoreAdapter("SQLite", _check_sqlite, _open_sqlite, servable=True), "sqlite")
RECORD_STORES.register(StoreAdapter("HTTP", lambda url, _base: http_base_url(url), _open_http,
                                    takes_token=True), "http", "https")


def _open_postgres(name: str, env: EnvironmentConfig, base_dir: str, readonly: bool) -> RecordStore:
    try:
        from .postgres.store import PostgresStore
    except ImportError as exc:
        raise _extra(name, "postgres", exc) from None
    from .postgres.url import parse_url
    return PostgresStore(name, parse_url(env.records), password_value(f"environments.{name}", env.password),
                         readonly=readonly)


def _check_postgres(url: str, base_dir: str) -> str:
    from .postgres.url import check_url  # no psycopg import: the config loads without the extra
    return check_url(url, base_dir)


RECORD_STORES.register(StoreAdapter("Postgres", _check_postgres, _open_postgres, servable=True),
                       "postgresql", "postgres")
