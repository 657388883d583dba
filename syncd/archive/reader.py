"""Reading an archive safely (docs/archive-format.md, "What a reader checks").

Everything about the zip's structure is checked when it is opened, before any member is read:
names, kinds, the manifest, every member listed with its size, compression ratios. Members are
then streamed, never extracted (no `extractall`: nothing is written under a member's name),
and each one's sha256 and size are checked once it is read to its end. Any problem is an
ArchiveError: one line naming the file, exit 2.
"""
from __future__ import annotations

import hashlib
import io
import re
import stat
import zipfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Iterator

import msgspec

from ..errors import ArchiveError
from .format import FORMAT, FORMAT_VERSION, MANIFEST, Manifest, decode_record

MAX_MANIFEST = 64 * 1024 * 1024
MAX_RATIO = 100  # uncompressed / compressed, for members over RATIO_FROM bytes
RATIO_FROM = 1024 * 1024
MAX_TOTAL = 1 << 40  # 1 TiB uncompressed in all
_NAMES = re.compile(r"records/[^/\\\x00]+\.ndjson|new-ids/[^/\\\x00]+\.ndjson|files/[0-9a-f]{64}")


class ArchiveReader:
    def __init__(self, path: Path, zf: zipfile.ZipFile, manifest: Manifest, label: str | None) -> None:
        self.path, self._zip, self.manifest = path, zf, manifest
        self.label = label or path.name.removesuffix(".zip")

    @classmethod
    def open(cls, path: Path, *, label: str | None = None) -> ArchiveReader:
        name = path.name
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, EOFError):
            raise ArchiveError(f"{name}: not a zip file") from None
        except OSError as exc:
            raise ArchiveError(f"{name}: cannot read ({exc.strerror or exc})") from None
        try:
            manifest = _checked(name, zf)
        except BaseException:
            zf.close()
            raise
        return cls(path, zf, manifest, label)

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def records(self, entity: str) -> Iterator[tuple[Any, ...]]:
        """The entity's records in archive order, as rows in its columns' order."""
        member = f"records/{entity}.ndjson"
        if member not in self.manifest.members:
            return
        columns = [c.name for c in self.manifest.entity(entity).columns]
        for number, line in enumerate(self._lines(member), 1):
            if line.strip():
                yield decode_record(line, columns, f"{self.path.name}: {member} line {number}")

    def id_map(self, entity: str) -> Iterator[tuple[Any, Any]]:
        member = self.manifest.new_ids.get(entity)
        if member is None:
            return
        for number, line in enumerate(self._lines(member), 1):
            try:
                old, new = msgspec.json.decode(line)
            except (msgspec.DecodeError, ValueError, TypeError):
                raise ArchiveError(f"{self.path.name}: {member} line {number}: not [old, new]") from None
            yield old, new

    def copy_file(self, sha256: str, out: BinaryIO) -> None:
        member = f"files/{sha256}"
        if member not in self.manifest.members:
            raise ArchiveError(f"{self.path.name}: no content for sha256 {sha256}")
        for chunk in self._chunks(member):
            out.write(chunk)

    def verify(self) -> None:
        """Read every member to its end: sizes and sha256 as listed, every record decodable."""
        for entity in self.manifest.entities:
            for _ in self.records(entity.name):
                pass
        for member in self.manifest.members:
            if not member.startswith("records/"):
                for _ in self._chunks(member):
                    pass

    def _lines(self, member: str) -> Iterator[bytes]:
        with self._checking(member) as stream:
            yield from io.BufferedReader(stream, 1 << 20)

    def _chunks(self, member: str) -> Iterator[bytes]:
        with self._checking(member) as stream:
            while chunk := stream.read(1 << 20):
                yield chunk

    def _checking(self, member: str) -> _Checked:
        return _Checked(self.path.name, member, self._zip.open(member), self.manifest)


class _Checked(io.RawIOBase):
    """A member's stream that hashes what is read and, at its end, compares with the manifest."""

    def __init__(self, archive: str, member: str, stream: IO[bytes], manifest: Manifest) -> None:
        self._where, self._stream = f"{archive}: {member}", stream
        self._want = manifest.members[member]
        self._digest, self._size = hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._stream.read(len(buffer))
        except (zipfile.BadZipFile, EOFError, OSError) as exc:  # zipfile's own CRC check, a cut file
            raise ArchiveError(f"{self._where}: damaged ({exc})") from None
        n = len(data)
        buffer[:n] = data
        self._digest.update(data)
        self._size += n
        if self._size > self._want.size:
            raise ArchiveError(f"{self._where}: larger than the manifest says")
        if n == 0:
            self._finish()
        return n

    def _finish(self) -> None:
        if self._size != self._want.size:
            raise ArchiveError(f"{self._where}: size differs from the manifest")
        if self._digest.hexdigest() != self._want.sha256:
            raise ArchiveError(f"{self._where}: sha256 differs from the manifest")

    def close(self) -> None:
        self._stream.close()
        super().close()


def _checked(name: str, zf: zipfile.ZipFile) -> Manifest:
    infos = zf.infolist()
    seen: set[str] = set()
    total = 0
    for info in infos:
        _check_member(name, info, seen)
        total += info.file_size
    if total > MAX_TOTAL:
        raise ArchiveError(f"{name}: {total} bytes uncompressed is over the bound of {MAX_TOTAL}")
    if MANIFEST not in seen:
        raise ArchiveError(f"{name}: no {MANIFEST}; not a syncd archive")
    manifest = _manifest(name, zf)
    sizes = {i.filename: i.file_size for i in infos if i.filename != MANIFEST}
    for member, spec in manifest.members.items():
        if member not in sizes:
            raise ArchiveError(f"{name}: member '{member}' is in the manifest but not in the archive")
        if sizes[member] != spec.size:
            raise ArchiveError(f"{name}: {member}: size differs from the manifest")
    for member in sizes:
        if member not in manifest.members:
            raise ArchiveError(f"{name}: member '{member}' is not listed in the manifest")
    entities = {e.name for e in manifest.entities}
    for e in manifest.entities:
        if e.key not in {c.name for c in e.columns}:
            raise ArchiveError(f"{name}: entity '{e.name}' has key '{e.key}' that is not one of its columns")
    for member in sizes:
        if member.startswith("records/") and member[8:-7] not in entities:
            raise ArchiveError(f"{name}: {member} is not the records of an entity in the manifest")
    return manifest


def _check_member(name: str, info: zipfile.ZipInfo, seen: set[str]) -> None:
    member = info.filename
    if not member or member.startswith(("/", "\\")) or "\\" in member or "\x00" in member \
            or re.match(r"[A-Za-z]:", member) or ".." in member.split("/"):
        raise ArchiveError(f"{name}: member '{member}' escapes the archive")
    if member in seen:
        raise ArchiveError(f"{name}: member '{member}' appears twice")
    seen.add(member)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveError(f"{name}: member '{member}' is a symbolic link")
    if member != MANIFEST and not _NAMES.fullmatch(member):
        raise ArchiveError(f"{name}: member '{member}' is not one a syncd archive has")
    if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ArchiveError(f"{name}: member '{member}' expands {info.file_size // max(info.compress_size, 1)} "
                           f"times (over {MAX_RATIO}: a zip bomb?)")


def _manifest(name: str, zf: zipfile.ZipFile) -> Manifest:
    info = zf.getinfo(MANIFEST)
    if info.file_size > MAX_MANIFEST:
        raise ArchiveError(f"{name}: {MANIFEST} is over {MAX_MANIFEST} bytes")
    try:
        raw = zf.read(MANIFEST)
        head = msgspec.json.decode(raw)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{name}: {MANIFEST} is damaged ({exc})") from None
    except msgspec.DecodeError:
        raise ArchiveError(f"{name}: {MANIFEST} is not JSON") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ArchiveError(f"{name}: not a syncd archive (format is not {FORMAT!r})")
    if head.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(f"{name}: format_version {head.get('format_version')!r} is not one this "
                           f"syncd reads ({FORMAT_VERSION})")
    try:
        return msgspec.json.decode(raw, type=Manifest)
    except msgspec.ValidationError as exc:
        raise ArchiveError(f"{name}: {MANIFEST}: {exc}") from None
