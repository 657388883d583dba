"""Local files (`file://`). Writes go to a temp file, fsync, verify, rename, fsync the folder:
a reader (or a crash) never sees a half-written file under the final name."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO, Callable, Iterable
from urllib.parse import unquote, urlparse

from .. import failpoints
from ..errors import ConfigError, PermanentError, TransientError
from .base import BlobStat, Planned
from .checksums import CHUNK, sha256_of_file


def path_of(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path))


class LocalBlobStore:
    def check_prefix(self, uri: str) -> str:
        if not (uri.startswith("file:///") and uri.endswith("/")):
            # a prefix without '/' would also rewrite siblings: file:///srv/a matches /srv/ab/x
            raise ConfigError(f"{uri!r} must be an absolute file:/// URI ending with '/'")
        return uri

    def check(self, uris: Iterable[str]) -> None:
        """Folders are created when a file lands: nothing to check up front."""

    def stat(self, uri: str) -> BlobStat | None:
        try:
            return BlobStat(path_of(uri).stat().st_size)
        except FileNotFoundError:
            return None

    def copy(self, src: str, dst: str, planned: Planned, only_if_generation: int | None) -> BlobStat:
        """Streamed, hashed on the way, re-read from disk to verify. Files have no
        generations: the caller compared the target just before (only_if_generation unused)."""
        source = path_of(src)
        digest = hashlib.sha256()

        def fill(out: BinaryIO) -> int:
            try:
                with source.open("rb") as fh:
                    return _stream(fh, out, digest)
            except FileNotFoundError as exc:
                raise PermanentError(f"file not found: {exc.filename}") from exc

        def check(temp: Path, size: int) -> None:
            _check_size(source, size, planned)
            if sha256_of_file(temp) != digest.hexdigest():
                raise TransientError(f"{temp}: bytes on disk differ from bytes read")

        return BlobStat(receive(dst, fill, check))

    def upload(self, path: Path, dst: str, planned: Planned, only_if_generation: int | None) -> BlobStat:
        return self.copy(path.as_uri(), dst, planned, only_if_generation)

    def download(self, src: str, out: BinaryIO, planned: Planned) -> None:
        try:
            with path_of(src).open("rb") as fh:
                _check_size(src, _stream(fh, out, hashlib.sha256()), planned)
        except FileNotFoundError as exc:
            raise PermanentError(f"file not found: {exc.filename}") from exc

    def sha256(self, uri: str) -> str:
        return sha256_of_file(path_of(uri))


def receive(dst: str, fill: Callable[[BinaryIO], object], check: Callable[[Path, int], None]) -> int:
    """Write dst atomically: fill a temp file, fsync, check it, rename, fsync the folder.

    Returns the size written. Any source (a local file, a GCS download) fills it.
    """
    target = path_of(dst)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A fixed name: a copy killed mid-way leaves a temp file that the retried copy of the
        # same target (resume) overwrites and then renames away. Never two copies at once of
        # one target: a run lists each target once.
        temp = target.with_name(f".{target.name}.syncd-tmp")
        try:
            with temp.open("wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            size = temp.stat().st_size
            check(temp, size)
            failpoints.hit("file.before-rename")
            os.replace(temp, target)
            _fsync_dir(target.parent)
            return size
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:
        raise TransientError(f"write {dst}: {exc}") from exc


def _stream(source: BinaryIO, out: BinaryIO, digest: "hashlib._Hash") -> int:
    size = 0
    while block := source.read(CHUNK):
        digest.update(block)
        out.write(block)
        size += len(block)
    return size


def _check_size(source: Path | str, size: int, planned: Planned) -> None:
    if planned.size is not None and size != planned.size:
        raise PermanentError(
            f"{source}: size {size} differs from the planned {planned.size} "
            "(the source changed after planning)")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
