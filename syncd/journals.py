"""The journal a config names: where it is and opening it.

Kept apart from `adapters` (which opens stores and builds a run's context) so that commands
that only read the journal import nothing of the stores, the planner or the applier.
A `postgresql://` journal (shared by workers and daemons, DESIGN §8.5) imports psycopg only
when opened.
"""
from __future__ import annotations

from pathlib import Path

from journal import Journal, open_journal

from .config import Config, is_postgres_url, password_value, sqlite_path
from .errors import InputError


def journal_path(config: Config) -> Path:
    """An SQLite journal's file; for a Postgres journal, the local folder where this machine
    keeps what stays on it (archive scratch files)."""
    if is_postgres_url(config.journal.url):
        return Path(config.base_dir) / ".syncd"
    return sqlite_path(config.journal.url, config.base_dir)


def journal_exists(config: Config) -> bool:
    """Whether a journal is there to read (a Postgres one is created by its first open)."""
    return is_postgres_url(config.journal.url) or journal_path(config).exists()


def journal_for(config: Config, *, create: bool = True) -> Journal:
    """The journal; commands that only read it refuse to create an empty one."""
    if is_postgres_url(config.journal.url):
        return _postgres(config)
    path = journal_path(config)
    if not create and not path.exists():
        raise InputError(f"no journal at {path}: nothing has run yet")
    return open_journal(path)


def _postgres(config: Config) -> Journal:
    try:
        from journal.postgres import PostgresJournal
        from .stores.postgres.store import connect_kwargs
        from .stores.postgres.url import parse_url
    except ImportError as exc:  # psycopg is the `postgres` extra
        raise InputError(f"a postgresql:// journal needs the postgres extra (pip install "
                         f"'syncd[postgres]'): {exc}") from None
    url = parse_url(config.journal.url)
    kwargs = connect_kwargs(url, password_value("journal", config.journal.password), readonly=False)
    for setting in ("options", "autocommit"):  # the journal sets its own
        kwargs.pop(setting, None)
    return PostgresJournal(kwargs, url.schema, f"{url.host}:{url.port}/{url.dbname} schema {url.schema}",
                           journal_path(config))
