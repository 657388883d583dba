"""Checksums of local files, streamed: sha256 (local ↔ local) and crc32c (what GCS keeps).

A read error is transient: the caller retries, looking at both sides again (a file that
vanished in between is then simply absent)."""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Protocol

from ..errors import TransientError

CHUNK = 1 << 20


class _Digest(Protocol):
    def update(self, data: bytes, /) -> object: ...


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    _feed(path, digest)
    return digest.hexdigest()


def crc32c_of_file(path: Path) -> str:
    """base64 of the big-endian CRC32C, the form GCS reports (`crc32c` of an object)."""
    import google_crc32c  # the gcs extra; only gs:// copies ask for crc32c

    checksum = google_crc32c.Checksum()  # type: ignore[no-untyped-call]  # google_crc32c has no hints
    _feed(path, checksum)
    return base64.b64encode(checksum.digest()).decode("ascii")  # type: ignore[no-untyped-call]


def _feed(path: Path, digest: _Digest) -> None:
    try:
        with path.open("rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
    except OSError as exc:
        raise TransientError(f"read {path}: {exc}") from exc
