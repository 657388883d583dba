"""The BlobStore port. "Not found" is None from size(), the same in every backend."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BlobCopy:
    size: int
    sha256: str


class BlobStore(Protocol):
    def size(self, uri: str) -> int | None: ...

    def sha256(self, uri: str) -> str: ...

    def copy(self, src: str, dst: str, expected_size: int | None) -> BlobCopy:
        """Copy src to dst atomically and verified; raises StoreError on failure."""
