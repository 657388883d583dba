"""Opening a journal by URL: the scheme picks the backend (only SQLite for now)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UnsupportedURL
from .sqlite import SqliteJournal

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A Postgres journal's schema: a plain lower-case name (used unquoted, in search_path too),
# short enough that its NOTIFY channel `syncd_<schema>` fits Postgres's 63-byte names.
PG_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,39}")


def sqlite_path(url: str | os.PathLike[str]) -> Path:
    """`sqlite:///rel.db` -> rel.db, `sqlite:////abs.db` -> /abs.db, a plain path -> itself."""
    text = os.fspath(url)
    if not _SCHEME.match(text) or re.match(r"^[A-Za-z]:[\\/]", text):  # C:\ is a path
        return Path(text).expanduser()
    if not text.startswith("sqlite:///"):
        raise UnsupportedURL(
            f"unsupported journal URL {text!r}: use sqlite:///relative.db, sqlite:////absolute.db or a path"
        )
    path = text.removeprefix("sqlite:///").split("?", 1)[0]
    if not path:
        raise UnsupportedURL(f"journal URL {text!r} names no file")
    return Path(path).expanduser()


def open_journal(url: str | os.PathLike[str]) -> SqliteJournal:
    """Open the journal at `url`. A new one's file and folder are created by its first use,
    and refused now if they could not be (journal/sqlite.py)."""
    return SqliteJournal(sqlite_path(url))
