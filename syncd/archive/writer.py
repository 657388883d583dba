"""Writing an archive, streaming: members go into `<name>.partial`, the manifest last, then the
file is fsynced and renamed into place, so a zip under the final name is always complete.
zipfile allows one member open at a time, so members are written one after the other."""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Iterator
from contextlib import AbstractContextManager, contextmanager

import msgspec

from ..errors import ArchiveError
from .format import MANIFEST, Manifest, MemberSpec

BUFFER = 256 * 1024  # lines are joined into writes of about this size
LEVEL = 1  # deflate level 1: most of the size win, several times faster than the default


class Member:
    """One member being written: size, sha256 and line count as it goes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buffer: list[bytes] = []
        self._buffered = 0
        self.size = 0
        self.count = 0
        self.digest = hashlib.sha256()

    def write(self, line: bytes) -> None:
        self._buffer.append(line)
        self._buffered += len(line)
        self.count += 1
        if self._buffered >= BUFFER:
            self.flush()

    def write_bytes(self, data: bytes) -> None:
        self.flush()
        self._emit(data)

    def flush(self) -> None:
        if self._buffer:
            self._emit(b"".join(self._buffer))
            self._buffer, self._buffered = [], 0

    def _emit(self, data: bytes) -> None:
        self._stream.write(data)
        self.digest.update(data)
        self.size += len(data)


class ArchiveWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self._zip = zipfile.ZipFile(self.partial, "w", zipfile.ZIP_DEFLATED, compresslevel=LEVEL)
        self._members: dict[str, MemberSpec] = {}

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None:  # not finished: nothing is left behind
            self._zip.close()
            self.partial.unlink(missing_ok=True)

    @contextmanager
    def lines(self, name: str) -> Iterator[Member]:
        with self._zip.open(name, "w", force_zip64=True) as stream:
            member = Member(stream)  # type: ignore[arg-type]
            yield member
            member.flush()
        self._members[name] = MemberSpec(size=member.size, sha256=member.digest.hexdigest())

    def records(self, entity: str) -> AbstractContextManager[Member]:
        return self.lines(f"records/{entity}.ndjson")

    def add_file(self, sha256: str, source: BinaryIO) -> bool:
        """files/<sha256>, once; the bytes must have that sha256."""
        name = f"files/{sha256}"
        if name in self._members:
            return False
        with self.lines(name) as member:
            while chunk := source.read(1 << 20):
                member.write_bytes(chunk)
            if member.digest.hexdigest() != sha256:
                raise ArchiveError(f"{self.path.name}: a file's bytes are not its sha256 {sha256} "
                                   "(it changed while being archived)")
        return True

    def finish(self, manifest: Manifest) -> str:
        """Write the manifest, make the file durable under its name; its sha256."""
        manifest.members = dict(self._members)
        self._zip.writestr(MANIFEST, msgspec.json.encode(manifest))
        self._zip.close()
        with open(self.partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.partial, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
