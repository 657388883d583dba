"""Local files (`file://`). Writes go to a temp file, fsync, verify, rename, fsync the folder:
a reader (or a crash) never sees a half-written file under the final name."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from .. import failpoints
from ..errors import PermanentError, TransientError
from .base import BlobCopy

CHUNK = 1 << 20


def path_of(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class LocalBlobStore:
    def size(self, uri: str) -> int | None:
        try:
            return path_of(uri).stat().st_size
        except FileNotFoundError:
            return None

    def sha256(self, uri: str) -> str:
        return _sha256(path_of(uri))

    def copy(self, src: str, dst: str, expected_size: int | None) -> BlobCopy:
        source, target = path_of(src), path_of(dst)
        try:
            return self._copy(source, target, expected_size)
        except FileNotFoundError as exc:
            raise PermanentError(f"file not found: {exc.filename}") from exc
        except OSError as exc:
            raise TransientError(f"copy {src} → {dst}: {exc}") from exc

    def _copy(self, source: Path, target: Path, expected_size: int | None) -> BlobCopy:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A fixed name: a copy killed mid-way leaves a temp file that the retried copy of the
        # same target (resume) overwrites and then renames away. Never two copies at once of
        # one target: a run lists each target once.
        temp = target.with_name(f".{target.name}.syncd-tmp")
        try:
            written = _stream(source, temp)
            if expected_size is not None and written.size != expected_size:
                raise PermanentError(
                    f"{source}: size {written.size} differs from the planned {expected_size} "
                    "(the source changed after planning)")
            if _sha256(temp) != written.sha256:
                raise TransientError(f"{target}: bytes on disk differ from bytes read")
            failpoints.hit("file.before-rename")
            os.replace(temp, target)
            _fsync_dir(target.parent)
            return written
        finally:
            temp.unlink(missing_ok=True)


def _stream(source: Path, temp: Path) -> BlobCopy:
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as src, temp.open("wb") as out:
        while block := src.read(CHUNK):
            digest.update(block)
            out.write(block)
            size += len(block)
        out.flush()
        os.fsync(out.fileno())
    return BlobCopy(size, digest.hexdigest())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
