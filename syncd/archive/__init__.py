"""Archives: one zip file that stands for an environment (docs/archive-format.md).

An archive is named in a run's source or target as `archive:/ABSOLUTE/PATH.zip`, so the
journal says which file a run read or wrote. `format.py` is the file format, `reader.py` and
`writer.py` read and write it safely and streaming, `store.py` makes an archive a record store
(a SQLite file the archive is loaded into), `export.py` writes a finished export's archive,
`resolvers.py` decides an import's conflicts.
"""
from __future__ import annotations

from pathlib import Path

PREFIX = "archive:"


def archive_env(path: Path) -> str:
    """The name a run gives an archive: `archive:/abs/path.zip`."""
    return PREFIX + str(path.resolve())


def is_archive(env: str) -> bool:
    return env.startswith(PREFIX)


def archive_path(env: str) -> Path:
    return Path(env[len(PREFIX):])


def staging_path(path: Path) -> Path:
    """Where an export's records land before the zip is written: beside the zip, so a resumed
    export finds them, and removed once the archive is verified."""
    return path.with_name(path.name + ".staging.db")
