"""The last step of an export: its staging file (the records the run applied) becomes the zip.

Run after the export's entries are applied (operations.finish_export), again by a resume if
the process died before the archive was journaled: the staging file is only removed once the
zip is written, read back whole (`ArchiveReader.verify`) and its sha256 journaled
(ArchiveWritten), so `audit` can say which archive a record went into.

`--new-ids`: integer keys below 1,000,000 (legacy autoincrement ids) get new keys at or above
it, the same everywhere they are referenced. Each entity's new key is
1,000,000 + (key × A + B) mod P, P = 2^53 − 111 (a prime: the map is one-to-one, and every new
key is an exact JSON number), A and B drawn at random per export, so two archives of two
environments whose ids collide get different keys; the pairs go to `new-ids/<entity>.ndjson`.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import msgspec

from journal import RunRow

from .. import blobs
from ..clock import now
from ..errors import PermanentError
from ..records import field_value, with_fields
from ..schema import Entity, Schema, TableInfo
from ..stores.sqlite import quote
from ..transforms import is_uri
from . import archive_path, staging_path
from .format import FORMAT, FORMAT_VERSION, ColumnSpec, EntitySpec, Manifest, encode_record
from .reader import ArchiveReader
from .writer import ArchiveWriter

LEGACY = 1_000_000  # --new-ids: integer keys below this are legacy ids, given new ones
PRIME = 2**53 - 111
PAGE = 10_000


@dataclass(frozen=True)
class Written:
    path: Path
    sha256: str
    size: int
    counts: dict[str, int]


class NewIds:
    """The key substitution of one export, per entity with integer keys (see the module doc)."""

    def __init__(self, entities: list[str]) -> None:
        self.params = {name: (secrets.randbelow(PRIME - 1) + 1, secrets.randbelow(PRIME)) for name in entities}

    def new(self, entity: str, key: Any) -> Any:
        params = self.params.get(entity)
        if params is None or not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < LEGACY:
            return key
        a, b = params
        return LEGACY + (key * a + b) % PRIME

    def row(self, entity: Entity, row: tuple[Any, ...]) -> tuple[Any, ...]:
        changes = {}
        for ref in entity.references:
            value = field_value(entity, row, ref.field)
            if (new := self.new(ref.target, value)) != value:
                changes[ref.field] = new
        if changes:
            row = with_fields(entity, row, changes)
        at = entity.index(entity.key)
        key = row[at]
        return row if (new := self.new(entity.name, key)) == key else (*row[:at], new, *row[at + 1:])


def write_archive(run: RunRow, schema: Schema) -> Written:
    """The export run's archive, from its staging file; verified before it is returned."""
    path = archive_path(run.target)
    staging = staging_path(path)
    conn = sqlite3.connect(f"file:{staging}?mode=ro", uri=True)
    try:
        tables = {t.name: t for t in msgspec.json.decode(
            conn.execute("SELECT tables FROM _syncd_tables").fetchone()[0], type=list[TableInfo])}
        names = [n for n in run.summary.get("order", schema.order) if n in schema.entities]
        new_ids = NewIds(_integer_keyed(conn, schema, names)) if run.options.get("new_ids") else None
        if new_ids:
            _check_no_collision(conn, schema, new_ids)
        with ArchiveWriter(path) as writer:
            counts, files = _write_records(writer, conn, schema, names, new_ids,
                                           bool(run.options.get("copy_files")))
            if run.options.get("copy_files"):
                _write_files(writer, files)
            maps = _write_new_ids(writer, conn, schema, new_ids) if new_ids else {}
            manifest = Manifest(
                format=FORMAT, format_version=FORMAT_VERSION, created_at=now(), source=run.source,
                kind="backup" if run.options.get("all_records") else "export", run=run.run,
                selection=_selection(run.options),
                entities=[_spec(schema.entity(n), tables[n], counts.get(n, 0)) for n in names],
                labels=list(run.options.get("labels") or ()), files=files, new_ids=maps)
            sha256 = writer.finish(manifest)
    finally:
        conn.close()
    with ArchiveReader.open(path) as reader:
        reader.verify()
    return Written(path, sha256, path.stat().st_size, counts)


def _selection(options: dict[str, Any]) -> dict[str, Any]:
    keys = ("entity", "filters", "limit", "all_records", "labels", "copy_files", "new_ids")
    return {k: options[k] for k in keys if options.get(k) not in (None, (), [], False)}


def _rows(conn: sqlite3.Connection, entity: Entity) -> Iterator[tuple[Any, ...]]:
    """The staged rows in the order the applier wrote them: dependency order."""
    cursor = conn.execute(f"SELECT {', '.join(quote(c) for c in entity.columns)} "
                          f"FROM {quote(entity.name)} ORDER BY rowid")
    while page := cursor.fetchmany(PAGE):
        yield from page


def _write_records(writer: ArchiveWriter, conn: sqlite3.Connection, schema: Schema, names: list[str],
                   new_ids: NewIds | None, with_files: bool) -> tuple[dict[str, int], dict[str, str]]:
    counts: dict[str, int] = {}
    files: dict[str, str] = {}  # URI → sha256 (filled by _write_files); here: URIs seen
    for name in names:
        entity = schema.entity(name)
        blob_fields = entity.blob_fields if with_files else ()
        with writer.records(name) as member:
            for row in _rows(conn, entity):
                for f in blob_fields:
                    if is_uri(uri := field_value(entity, row, f)):
                        files[uri] = ""
                member.write(encode_record(entity.columns, new_ids.row(entity, row) if new_ids else row))
            counts[name] = member.count
    return counts, files


def _write_files(writer: ArchiveWriter, files: dict[str, str]) -> None:
    """Each file's content once, under its sha256; the manifest maps URIs to it."""
    for uri in files:
        with _local_copy(uri) as local:
            digest = _sha256(local)
            with open(local, "rb") as source:
                writer.add_file(digest, source)
        files[uri] = digest


class _local_copy:
    """A local path holding the blob's bytes: the file itself, or a downloaded temporary copy."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.temp: str | None = None
        self.path: Path | None = None

    def __enter__(self) -> Path:
        if blobs.is_local(self.uri):
            from ..blobs.local import path_of
            self.path = path_of(self.uri)
            if not self.path.is_file():
                raise PermanentError(f"export --with-files: {self.uri} is missing")
            return self.path
        stat = blobs.stat(self.uri)
        if stat is None:
            raise PermanentError(f"export --with-files: {self.uri} is missing")
        fd, name = tempfile.mkstemp(prefix="syncd-blob-")
        self.temp = name
        with os.fdopen(fd, "wb") as out:
            blobs.store_for(self.uri).download(self.uri, out, blobs.Planned(stat.size, stat.crc32c,
                                                                             stat.generation))
        return Path(name)

    def __exit__(self, *_: object) -> None:
        if self.temp:
            os.unlink(self.temp)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _integer_keyed(conn: sqlite3.Connection, schema: Schema, names: list[str]) -> list[str]:
    """Entities whose staged keys are integers: they get new ids."""
    out = []
    for name in names:
        entity = schema.entity(name)
        kind = conn.execute(f"SELECT typeof({quote(entity.key)}) FROM {quote(name)} LIMIT 1").fetchone()
        if kind is None or kind[0] == "integer":
            out.append(name)
    return out


def _check_no_collision(conn: sqlite3.Connection, schema: Schema, new_ids: NewIds) -> None:
    """A new key equal to a key the entity already has at or above LEGACY: draw again
    (chance about n²/2^53; checked rather than assumed)."""
    for name in list(new_ids.params):
        entity = schema.entity(name)
        key = quote(entity.key)
        high = {r[0] for r in conn.execute(f"SELECT {key} FROM {quote(name)} WHERE {key} >= ?", (LEGACY,))}
        while high and any(new_ids.new(name, r[0]) in high for r in conn.execute(
                f"SELECT {key} FROM {quote(name)} WHERE {key} < ?", (LEGACY,))):
            new_ids.params[name] = (secrets.randbelow(PRIME - 1) + 1, secrets.randbelow(PRIME))


def _write_new_ids(writer: ArchiveWriter, conn: sqlite3.Connection, schema: Schema,
                   new_ids: NewIds) -> dict[str, str]:
    maps = {}
    encode: Callable[[Any], bytes] = msgspec.json.encode
    for name in new_ids.params:
        entity = schema.entity(name)
        member = f"new-ids/{name}.ndjson"
        with writer.lines(member) as out:
            for (key,) in conn.execute(f"SELECT {quote(entity.key)} FROM {quote(name)} ORDER BY rowid"):
                if (new := new_ids.new(name, key)) != key:
                    out.write(encode([key, new]) + b"\n")
        maps[name] = member
    return maps


def _spec(entity: Entity, table: TableInfo, count: int) -> EntitySpec:
    types = {c.name: c for c in table.columns}
    return EntitySpec(
        name=entity.name, key=entity.key, count=count,
        columns=[ColumnSpec(name=n, type=types[n].type, notnull=types[n].notnull, is_json=types[n].is_json)
                 for n in entity.columns],
        foreign_keys=[(a, b, c) for a, b, c in table.foreign_keys],
        natural_key=list(entity.natural_key),
        references=[(str(r.field), r.target) for r in entity.references])
