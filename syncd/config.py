"""`syncd.toml` → typed, validated config structs (architecture §5).

The file is read with tomllib and each section converted with msgspec on its own, because
msgspec reports dict keys as `[...]`; converting per named section lets every error name the
exact key (`environments.prod.records`). Relative sqlite paths are made absolute here, against
the config file's folder, so nothing downstream depends on the process's working directory.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from .errors import ConfigError
from .request import RunSpec

DEFAULT_FILE = "syncd.toml"
ENV_VAR = "SYNCD_CONFIG"

_ENV_NAME = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class JournalConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # sqlite:///path (one machine) or postgresql://USER@HOST:PORT/DB?schema=NAME (shared by
    # workers and daemons on several machines; schema syncd_journal unless named)
    url: str = "sqlite:///.syncd/journal.db"
    # a Postgres journal's password, written "${VAR}" as an environment's; without it libpq
    # reads PGPASSWORD or ~/.pgpass
    password: str | None = None

    def __repr__(self) -> str:
        return f"JournalConfig(url={self.url!r}, password={None if self.password is None else '***'})"


class EnvironmentConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    records: str
    # source URI prefix → target URI prefix, applied when this environment is the target
    blob_map: dict[str, str] = {}
    # HTTP record stores: the bearer token, written "${VAR}" and expanded when the store is
    # opened (a secret is never written in the file), and the seconds one request may take
    # before it is retried
    token: str | None = None
    timeout: float = 30.0
    # Postgres record stores: the password, written "${VAR}" like a token and expanded when
    # the store is opened; without it libpq reads PGPASSWORD or ~/.pgpass
    password: str | None = None
    # `syncd serve`: the only entities it serves (empty: every table with a one-column key);
    # names are checked against the database when the server starts
    serve_entities: list[str] = []

    def __repr__(self) -> str:  # the token must not reach a log line or a traceback
        token = None if self.token is None else "***"
        password = None if self.password is None else "***"
        return (f"EnvironmentConfig(records={self.records!r}, blob_map={self.blob_map!r}, "
                f"token={token}, timeout={self.timeout!r}, password={password}, "
                f"serve_entities={self.serve_entities!r})")


class EntityConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    natural_key: list[str] = []
    references: dict[str, str] = {}
    blob_fields: list[str] = []
    children: list[str] = []
    compare_ignore: list[str] = []
    json_columns: list[str] = []  # columns holding JSON that the database declares otherwise


class JobConfig(RunSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[jobs.NAME]`: a run request (syncd/request.py) the daemon runs on a schedule.

    Schedules are parsed, and entities and fields checked against the stores, when the
    daemon starts (syncd/daemon/jobs.py); here the request's own rules and the shape of the
    schedule are checked.
    """

    every: str | None = None  # "15m", "1h30m", "45s", "1d"
    cron: str | None = None  # "0 3 * * *", in `timezone`
    timezone: str = "UTC"

    def problems(self) -> dict[str, str]:
        if self.kind not in ("copy", "transfer"):  # a schedule would clone or move again and again
            return {"kind": "a job copies or transfers; the other kinds are run by hand"}
        return super().problems()


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    journal: JournalConfig = msgspec.field(default_factory=JournalConfig)
    environments: dict[str, EnvironmentConfig] = {}
    entities: dict[str, EntityConfig] = {}
    jobs: dict[str, JobConfig] = {}
    base_dir: str = ""  # folder of the config file (cwd when there is none); set by the loader

    def environment(self, name: str) -> EnvironmentConfig:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none"
            raise ConfigError(f"unknown environment {name!r} (known: {known})") from None


# ---------------------------------------------------------------------------- finding the file

def find_config_path(explicit: str | None) -> Path | None:
    """--config PATH, else $SYNCD_CONFIG, else ./syncd.toml if it exists.

    An explicitly named file is returned even when missing: the loader must then fail rather
    than silently fall back to defaults.
    """
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env)
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def load_config(explicit: str | None = None, *, required: bool = True) -> Config:
    path = find_config_path(explicit)
    if path is None:
        if required:
            raise ConfigError(
                f"no config file: ./{DEFAULT_FILE} (use --config or {ENV_VAR})"
            )
        return _build({}, where="", base_dir=os.getcwd())
    raw = _read_toml(path)
    return _build(raw, where=f"{path}: ", base_dir=os.path.dirname(os.path.abspath(path)))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML{_toml_position(str(exc))}") from None


def _toml_position(message: str) -> str:
    # Python 3.11's TOMLDecodeError carries the position only inside its message.
    match = re.fullmatch(r"(.*) \(at line (\d+), column \d+\)", message)
    if match:
        return f" at line {match[2]}: {match[1]}"
    match = re.fullmatch(r"(.*) \(at end of document\)", message)
    return f" at end of document: {match[1]}" if match else f": {message}"


# ---------------------------------------------------------------------------- building

def _build(raw: dict[str, Any], *, where: str, base_dir: str) -> Config:
    known = {"journal", "environments", "entities", "jobs"}  # base_dir is never read from the file
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where}unknown key {key!r}")
    journal = _convert(raw.get("journal", {}), JournalConfig, where, "journal")
    journal.url = _journal_url(journal, base_dir, where)
    environments = {
        name: _environment(name, value, where, base_dir)
        for name, value in _table(raw, "environments", where).items()
    }
    entities = {
        name: _convert(value, EntityConfig, where, f"entities.{name}")
        for name, value in _table(raw, "entities", where).items()
    }
    jobs = {
        name: _job(name, value, where, environments)
        for name, value in _table(raw, "jobs", where).items()
    }
    return Config(journal=journal, environments=environments, entities=entities, jobs=jobs,
                  base_dir=base_dir)


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{key}: expected a table, got {_kind_of(value)}")
    return value


def _environment(name: str, value: Any, where: str, base_dir: str) -> EnvironmentConfig:
    dotted = f"environments.{name}"
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}{dotted}: environment names may only use letters, digits, '_' and '-'"
        )
    env = _convert(value, EnvironmentConfig, where, dotted)
    env.records = _records_url(env.records, base_dir, where, f"{dotted}.records")
    env.token = _token(env, where, dotted)
    env.password = _password(env, where, dotted)
    if not env.timeout > 0:
        raise ConfigError(f"{where}{dotted}.timeout: must be more than 0 seconds")
    env.blob_map = {_blob_prefix(s, where, f"{dotted}.blob_map"): _blob_prefix(t, where, f"{dotted}.blob_map")
                    for s, t in env.blob_map.items()}
    return env


def _job(name: str, value: Any, where: str, environments: dict[str, EnvironmentConfig]) -> JobConfig:
    dotted = f"jobs.{name}"
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"{where}{dotted}: job names may only use letters, digits, '_' and '-'")
    job = _convert(value, JobConfig, where, dotted)
    problems = {
        "source": _unknown_environment(job.source, environments),
        "target": _unknown_environment(job.target, environments),
        **job.problems(),  # the rules every run request follows, CLI or job
        "every": "give either every or cron, not both" if job.every and job.cron
        else "give every (e.g. \"15m\") or cron (e.g. \"0 3 * * *\")" if not (job.every or job.cron)
        else None,
    }
    for key, problem in problems.items():
        if problem:
            raise ConfigError(f"{where}{dotted}.{key}: {problem}")
    return job


def _unknown_environment(name: str, environments: dict[str, EnvironmentConfig]) -> str | None:
    if name in environments:
        return None
    return f"unknown environment {name!r} (known: {', '.join(sorted(environments)) or 'none'})"


_S = TypeVar("_S", bound=msgspec.Struct)


def _convert(value: Any, type_: type[_S], where: str, dotted: str) -> _S:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{dotted}: expected a table, got {_kind_of(value)}")
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise ConfigError(where + _explain(str(exc), dotted)) from None


# msgspec's type names → the words a TOML author knows
_KINDS = {
    "str": "a string", "int": "an integer", "float": "a float", "bool": "a boolean",
    "array": "an array", "object": "a table", "datetime": "a datetime", "date": "a date",
    "time": "a time", "null": "nothing",
}


def _explain(message: str, dotted: str) -> str:
    """Rewrite a msgspec ValidationError message into one line naming the key."""
    text, _, at = message.partition(" - at `")
    # `$.blob_map[...]` hides the dict key; `$.natural_key[1]` keeps the index
    path = dotted + at.rstrip("`")[1:].replace("[...]", "") if at else dotted
    if match := re.fullmatch(r"Object contains unknown field `(.*)`", text):
        return f"unknown key {match[1]!r} in {path}"
    if match := re.fullmatch(r"Object missing required field `(.*)`", text):
        return f"missing key {match[1]!r} in {path}"
    if match := re.fullmatch(r"Expected `(\w+)`, got `(\w+)`", text):
        return f"{path}: expected {_KINDS.get(match[1], match[1])}, got {_KINDS.get(match[2], match[2])}"
    return f"{path}: {text}"


def _kind_of(value: Any) -> str:
    names = {str: "str", bool: "bool", int: "int", float: "float", list: "array", dict: "object"}
    kind = names.get(type(value), type(value).__name__)
    return _KINDS.get(kind, kind)


# ---------------------------------------------------------------------------- URLs

def sqlite_path(url: str, base_dir: str) -> Path:
    """`sqlite:///rel/x.db` → base_dir/rel/x.db; `sqlite:////abs/x.db` → /abs/x.db.

    SQLAlchemy's convention: three slashes then the path, so an absolute path shows four.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(f"not a sqlite URL with a file path: {url!r} (e.g. sqlite:///data/x.db)")
    return Path(os.path.normpath(os.path.join(base_dir, url[len(prefix):])))


def _resolve_sqlite(url: str, base_dir: str, where: str, dotted: str) -> str:
    try:
        path = sqlite_path(url, base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{where}{dotted}: {exc}") from None
    return "sqlite:///" + path.as_posix()  # absolute path → the four-slash form


JOURNAL_SCHEMA = "syncd_journal"  # a Postgres journal's schema when its URL names none


def is_postgres_url(url: str) -> bool:
    return url.split(":", 1)[0].lower() in ("postgresql", "postgres")


def _journal_url(journal: JournalConfig, base_dir: str, where: str) -> str:
    if not is_postgres_url(journal.url):
        if journal.password is not None:
            raise ConfigError(f"{where}journal.password: only a Postgres journal takes a password")
        return _resolve_sqlite(journal.url, base_dir, where, "journal.url")
    from .stores.postgres.url import parse_url  # no psycopg: checks the text only
    try:
        url = parse_url(journal.url)
    except ConfigError as exc:
        raise ConfigError(f"{where}journal.url: {exc}") from None
    if "schema=" not in journal.url:
        url = dataclasses.replace(url, schema=JOURNAL_SCHEMA)
    from journal.url import PG_SCHEMA
    if not PG_SCHEMA.fullmatch(url.schema):
        raise ConfigError(f"{where}journal.url: schema {url.schema!r} must be a plain lower-case name "
                          "(letters, digits, _; at most 40)")
    if journal.password is not None and _TOKEN_REF.fullmatch(journal.password) is None:
        raise ConfigError(f"{where}journal.password: write it as \"${{VAR}}\"; passwords are "
                          "read from the process environment, never from the file")
    return str(url)


def _records_url(url: str, base_dir: str, where: str, dotted: str) -> str:
    from .stores import RECORD_STORES  # the registry imports this module: resolved at call time
    try:
        return RECORD_STORES.for_url(url).check_url(url, base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{where}{dotted}: {exc}") from None


def http_base_url(url: str) -> str:
    """The base URL of a `syncd serve` API, without a trailing '/'."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigError(f"{url!r} names no host")
    if parts.username or parts.password:
        # credentials in a URL end up in logs; the token is the one credential
        raise ConfigError("no credentials in the URL; use token = \"${VAR}\"")
    if parts.query or parts.fragment:
        raise ConfigError(f"{url!r} must not have a query or fragment")
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise ConfigError(f"{url!r} has an invalid port") from None
    return url.rstrip("/")


def _token(env: EnvironmentConfig, where: str, dotted: str) -> str | None:
    """Check that `token` is written `"${VAR}"`; it is expanded only when the store is opened
    (`token_value`), so commands that never open this environment do not need its secret."""
    from .stores import RECORD_STORES
    is_http = RECORD_STORES.for_url(env.records).takes_token
    if env.token is None:
        if is_http:
            raise ConfigError(f"{where}{dotted}.token: required for an HTTP record store "
                              "(token = \"${VAR}\")")
        return None
    if not is_http:
        raise ConfigError(f"{where}{dotted}.token: only HTTP record stores take a token")
    if _TOKEN_REF.fullmatch(env.token) is None:
        raise ConfigError(f"{where}{dotted}.token: write it as \"${{VAR}}\"; tokens are read "
                          "from the process environment, never from the file")
    return env.token


def token_value(name: str, env: EnvironmentConfig) -> str:
    """The environment's token, read from the process environment now; the value itself
    never appears in a message."""
    match = _TOKEN_REF.fullmatch(env.token or "")
    if match is None:
        raise ConfigError(f"environments.{name}.token: required for an HTTP record store")
    value = os.environ.get(match[1])
    if not value:
        raise ConfigError(f"environments.{name}.token: environment variable {match[1]} is not set")
    return value


def _password(env: EnvironmentConfig, where: str, dotted: str) -> str | None:
    """Check that `password` is written `"${VAR}"` (a secret is never in the file); it is
    expanded only when the store is opened (`password_value`), as tokens are."""
    from .stores import RECORD_STORES
    if env.password is None:
        return None
    if RECORD_STORES.for_url(env.records).label != "Postgres":
        raise ConfigError(f"{where}{dotted}.password: only Postgres record stores take a password")
    if _TOKEN_REF.fullmatch(env.password) is None:
        raise ConfigError(f"{where}{dotted}.password: write it as \"${{VAR}}\"; passwords are "
                          "read from the process environment, never from the file")
    return env.password


def password_value(dotted: str, password: str | None) -> str | None:
    """A `password = "${VAR}"` (of the setting `dotted`) read from the process environment
    now, or None (libpq then reads PGPASSWORD or ~/.pgpass); the value itself never appears
    in a message."""
    if password is None:
        return None
    match = _TOKEN_REF.fullmatch(password)
    if match is None:
        raise ConfigError(f"{dotted}.password: write it as \"${{VAR}}\"")
    value = os.environ.get(match[1])
    if not value:
        raise ConfigError(f"{dotted}.password: environment variable {match[1]} is not set")
    return value


def _blob_prefix(uri: str, where: str, dotted: str) -> str:
    """A blob_map prefix checked and normalised by its scheme's store."""
    from .blobs import BLOB_STORES
    try:
        return BLOB_STORES.for_url(uri)().check_prefix(uri)
    except ConfigError as exc:
        raise ConfigError(f"{where}{dotted}: {exc}") from None
