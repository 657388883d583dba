"""The BlobStore port.

A store knows blobs of one URI scheme. "Not found" is `stat() -> None`, the same in every
backend. Comparing two blobs must not mean downloading them: each store reports the
fingerprints it keeps for free (GCS: size, crc32c, md5), and `blobs.same()` picks, per pair of
stores, the cheapest comparison both sides can answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Protocol


@dataclass(frozen=True)
class BlobStat:
    """What a store knows about one blob without reading its bytes."""

    size: int
    crc32c: str | None = None  # base64 of the big-endian CRC32C, as GCS reports it
    md5: str | None = None  # base64, as GCS reports it (absent for composite objects)
    generation: int | None = None  # GCS: the object's version; pins a copy to what was planned


@dataclass(frozen=True)
class Planned:
    """What the plan saw of a source blob; a copy that would write anything else fails."""

    size: int | None  # None: the source was missing at planning time
    crc32c: str | None = None
    generation: int | None = None


class BlobStore(Protocol):
    def check_prefix(self, uri: str) -> str:
        """A `blob_map` prefix of this scheme, normalised; ConfigError naming what is wrong.
        Called when the config is loaded: no network."""

    def check(self, uris: Iterable[str]) -> None:
        """InputError unless every container these URIs live in (a bucket) is reachable."""

    def stat(self, uri: str) -> BlobStat | None:
        """Size and kept checksums, or None when there is no such blob."""

    def copy(self, src: str, dst: str, planned: Planned, only_if_generation: int | None) -> BlobStat:
        """Copy src to dst within this store, atomically and verified; the copy's stat.

        only_if_generation is a precondition on dst where the store keeps generations (GCS:
        0 = must not exist, N = must still be generation N; a failed one raises TargetExists);
        stores without generations ignore it. Raises TransientError / PermanentError.
        """

    def upload(self, path: Path, dst: str, planned: Planned, only_if_generation: int | None) -> BlobStat:
        """Make dst hold the bytes of a local file, atomically and verified; dst's stat."""

    def download(self, src: str, out: BinaryIO, planned: Planned) -> None:
        """Stream src's planned bytes into out (the caller lands them atomically)."""
