"""`postgresql://USER@HOST:PORT/DB?schema=NAME` → connection settings, checked without network.

The password is never part of the URL (it would reach logs and the journal's run options):
it comes from the environment's `password = "${VAR}"`, `PGPASSWORD` or `~/.pgpass`, which
libpq reads itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ...errors import ConfigError

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
DEFAULT_SCHEMA = "public"
# libpq settings a URL may carry besides `schema`; anything else is refused so a typo is seen
PASSED_ON = ("sslmode", "sslrootcert", "connect_timeout", "application_name")


@dataclass(frozen=True)
class PgUrl:
    host: str
    port: int
    dbname: str
    user: str | None
    schema: str
    options: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in
                         (("schema", self.schema), *self.options))
        return f"postgresql://{user}{host}:{self.port}/{quote(self.dbname, safe='')}?{query}"

    def where(self) -> str:
        """Database and schema for messages (no user, no secret)."""
        return f"{self.host}:{self.port}/{self.dbname} schema {self.schema!r}"


def parse_url(url: str) -> PgUrl:
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigError(f"not a postgresql:// URL: {url!r}")
    if parts.password is not None:
        raise ConfigError("no password in the URL; use password = \"${VAR}\", PGPASSWORD "
                          "or ~/.pgpass")
    if not parts.hostname:
        raise ConfigError(f"{url!r} names no host (postgresql://USER@HOST:PORT/DB)")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"{url!r} has an invalid port") from None
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ConfigError(f"{url!r} names no database (postgresql://USER@HOST:PORT/DB)")
    if parts.fragment:
        raise ConfigError(f"{url!r} must not have a fragment")
    schema, options = _query(url, parts.query)
    return PgUrl(parts.hostname, port, dbname, unquote(parts.username) if parts.username else None,
                 schema, options)


def _query(url: str, query: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    schema = DEFAULT_SCHEMA
    options: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "schema" and value:
            schema = value
        elif key in PASSED_ON:
            options.append((key, value))
        elif key == "password":
            raise ConfigError("no password in the URL; use password = \"${VAR}\", PGPASSWORD "
                              "or ~/.pgpass")
        else:
            raise ConfigError(f"{url!r}: unknown query parameter {key!r} "
                              f"(allowed: schema, {', '.join(PASSED_ON)})")
    return schema, tuple(options)


def check_url(url: str, _base_dir: str) -> str:
    """The registry's config-time check: the canonical URL, or a ConfigError."""
    return str(parse_url(url))
