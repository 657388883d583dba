"""An archive as a record store: a SQLite file holding its records, so every read the planner
makes (pages by key, fetch by keys, natural-key matches, filters) runs in SQLite, and memory
stays bounded however large the archive is.

- import and restore read an archive: `open_archive` streams its records into a temporary
  file (each member's sha256 checked as it is read: a damaged archive fails before anything
  is planned), then opens it read-only.
- export writes one: `open_staging` creates `<out>.zip.staging.db` with the source's tables,
  the applier writes the export's entries into it (resumable, as any target), and
  `export.write_archive` turns it into the zip.

Columns are created without a declared type, so SQLite keeps every value exactly as given
(no affinity turns the text "1.50" into a number); `describe()` answers from the table list
stored with the records (the archive's manifest, or the source's own description).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from itertools import islice
from pathlib import Path
from typing import Callable

import msgspec

from ..errors import ArchiveError
from ..schema import Column, TableInfo
from ..stores.sqlite import SqliteStore, quote
from .format import EntitySpec, Manifest
from .reader import ArchiveReader

_TABLES = "_syncd_tables"  # the table list describe() returns, as JSON
LOAD_BATCH = 10_000


class ArchiveStore(SqliteStore):
    def __init__(self, name: str, path: Path, *, readonly: bool, owned: Path | None = None,
                 archive: Path | None = None) -> None:
        super().__init__(name, path, readonly=readonly)
        self.archive = archive  # the zip it was loaded from (import, restore)
        row = self._conn.execute(f"SELECT tables FROM {_TABLES}").fetchone()
        self._tables = msgspec.json.decode(row[0], type=list[TableInfo])
        self._owned = owned  # a temporary folder removed on close

    async def describe(self) -> list[TableInfo]:
        return self._tables

    async def close(self) -> None:
        await super().close()
        if self._owned is not None:
            shutil.rmtree(self._owned, ignore_errors=True)


def create_tables(path: Path, tables: list[TableInfo]) -> None:
    """A new file with these tables (untyped columns, the key as primary key) and their list."""
    conn = sqlite3.connect(path)
    try:
        for t in tables:
            columns = ", ".join(quote(c.name) for c in t.columns)
            key = ", ".join(quote(k) for k in t.primary_key)
            conn.execute(f"CREATE TABLE {quote(t.name)} ({columns}"
                         + (f", PRIMARY KEY ({key}))" if key else ")"))
        conn.execute(f"CREATE TABLE {_TABLES} (tables TEXT NOT NULL)")
        conn.execute(f"INSERT INTO {_TABLES} VALUES (?)", (msgspec.json.encode(tables).decode(),))
        conn.commit()
    finally:
        conn.close()


def tables_of(manifest: Manifest) -> list[TableInfo]:
    return [table_of(e) for e in manifest.entities]


def table_of(spec: EntitySpec) -> TableInfo:
    return TableInfo(spec.name, tuple(Column(c.name, c.type, c.notnull, c.is_json) for c in spec.columns),
                     (spec.key,), tuple((a, b, c) for a, b, c in spec.foreign_keys))


def open_archive(name: str, path: Path) -> ArchiveStore:
    """The archive's records in a temporary SQLite file, opened read-only."""
    with ArchiveReader.open(path) as reader:
        folder = Path(tempfile.mkdtemp(prefix="syncd-archive-"))
        try:
            db = folder / "records.db"
            load(reader, db)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return ArchiveStore(name, db, readonly=True, owned=folder, archive=path)


def stage_files(archive: Path, folder: Path) -> Callable[[str], str]:
    """Every file of the archive as a local file under `folder`, named by the sha256 of its
    URI (two URIs with the same content go to two places, so each is one copy); each is
    checked against its sha256 as it is extracted. Returns URI → the staged file's URI; a URI
    the archive has no content for stays as it is (its copy fails, journaled, as a missing
    source does)."""
    folder.mkdir(parents=True, exist_ok=True)
    staged: dict[str, str] = {}
    with ArchiveReader.open(archive) as reader:
        for uri, sha256 in reader.manifest.files.items():
            path = folder / hashlib.sha256(uri.encode()).hexdigest()
            if not path.exists():
                temp = path.with_suffix(".partial")
                with open(temp, "wb") as out:
                    reader.copy_file(sha256, out)
                os.replace(temp, path)
            staged[uri] = path.as_uri()
    return lambda uri: staged.get(uri, uri)


def load(reader: ArchiveReader, db: Path) -> None:
    create_tables(db, tables_of(reader.manifest))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = OFF")  # a scratch file: rebuilt from the zip if lost
    conn.execute("PRAGMA synchronous = OFF")
    try:
        for spec in reader.manifest.entities:
            marks = ", ".join("?" for _ in spec.columns)
            insert = f"INSERT INTO {quote(spec.name)} VALUES ({marks})"
            rows = reader.records(spec.name)
            while batch := list(islice(rows, LOAD_BATCH)):
                try:
                    conn.executemany(insert, batch)
                except sqlite3.IntegrityError as exc:
                    raise ArchiveError(f"{reader.path.name}: records/{spec.name}.ndjson: "
                                       f"a key appears twice ({exc})") from None
        conn.commit()
    finally:
        conn.close()


def open_staging(name: str, path: Path, tables: list[TableInfo] | None, *, readonly: bool) -> ArchiveStore:
    """An export's staging file: created with `tables` when it does not exist yet (a resumed
    export finds the one its first attempt made)."""
    if not path.exists():
        if tables is None:
            raise ArchiveError(f"{path}: the export's staging file is gone; export again")
        create_tables(path, tables)
    return ArchiveStore(name, path, readonly=readonly)
