"""The journal a config names: where it is and opening it.

Kept apart from `adapters` (which opens stores and builds a run's context) so that commands
that only read the journal import nothing of the stores, the planner or the applier.
"""
from __future__ import annotations

from pathlib import Path

from journal import Journal, open_journal

from .config import Config, sqlite_path
from .errors import InputError


def journal_path(config: Config) -> Path:
    return sqlite_path(config.journal.url, config.base_dir)


def journal_for(config: Config, *, create: bool = True) -> Journal:
    """The journal; commands that only read it refuse to create an empty one."""
    path = journal_path(config)
    if not create and not path.exists():
        raise InputError(f"no journal at {path}: nothing has run yet")
    return open_journal(path)
