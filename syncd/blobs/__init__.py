"""Blob stores, picked by URI scheme (`file://`, `gs://`), and what works across two of them.

- `stat(uri)`: size and the checksums a store keeps (None: not found).
- `same(src, dst, ...)`: the cheapest comparison both sides can answer: crc32c (and md5 when
  both keep one) between GCS objects, crc32c computed locally between a file and an object,
  sha256 between two files. Nothing is downloaded to compare.
- `put(src, dst, planned, ...)`: make dst hold the planned bytes of src: a server-side rewrite
  within GCS, a streamed upload or download between a file and GCS, a local copy between files.
- `ensure(src, dst, planned, ...)`: put unless dst already holds those bytes (idempotent, so a
  copy whose outcome was lost in a crash is safely done again).
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Callable, Iterable

from ..errors import InputError, PermanentError, TransientError
from ..registry import Registry, scheme_of
from ..retry import retrying
from .base import BlobStat, BlobStore, Planned
from .checksums import crc32c_of_file
from .gcs import GcsBlobStore, TargetExists  # google-cloud-storage itself loads on first use
from .local import LocalBlobStore, path_of, receive

__all__ = ["BLOB_STORES", "BlobStat", "BlobStore", "LocalBlobStore", "Planned", "check_buckets",
           "ensure", "put", "retrying", "same", "stat", "store_for"]

DEFAULT_FILE_WORKERS = 32  # copies and checks in flight: network-bound, so many more than cores
MAX_FILE_WORKERS = 64  # the GCS client's connection pool size
LOCAL = "file"  # the scheme whose blobs are files on this machine: the bridge between stores

# Scheme → a factory of the process's one store of that scheme (built on first use).
BLOB_STORES: Registry[Callable[[], BlobStore]] = Registry(
    "blob URI", "file:///DIR/ or gs://BUCKET/")
BLOB_STORES.register(cache(LocalBlobStore), LOCAL)
BLOB_STORES.register(cache(GcsBlobStore), "gs")


def store_for(uri: str) -> BlobStore:
    try:
        return BLOB_STORES.for_url(uri)()
    except InputError:
        raise InputError(f"unsupported blob URI scheme '{scheme_of(uri) or uri}' in {uri}") from None


def is_local(uri: str) -> bool:
    return scheme_of(uri) == LOCAL


def stat(uri: str) -> BlobStat | None:
    return store_for(uri).stat(uri)


def same(src: str, dst: str, a: BlobStat, b: BlobStat) -> bool:
    """Whether src (as `a` says) and dst (as `b` says) hold the same bytes."""
    if a.size != b.size:
        return False
    if a.crc32c and b.crc32c:
        return a.crc32c == b.crc32c and (not (a.md5 and b.md5) or a.md5 == b.md5)
    if a.crc32c and is_local(dst):
        return crc32c_of_file(path_of(dst)) == a.crc32c
    if b.crc32c and is_local(src):
        return crc32c_of_file(path_of(src)) == b.crc32c
    if is_local(src) and is_local(dst):
        return LocalBlobStore().sha256(src) == LocalBlobStore().sha256(dst)
    return False  # no fingerprint both sides keep: treat as different, the copy verifies


def ensure(src: str, dst: str, planned: Planned, look_first: bool) -> bool:
    """Make dst hold the planned bytes of src: True if they were written now, False if dst
    held them already.

    Files are always looked at first (a stat costs nothing). A GCS target is looked at first
    only when asked (on resume, where an earlier attempt may have copied it); otherwise the
    write itself says "only if absent" and GCS refuses it if the target exists after all,
    which saves a round trip per object on a first run.
    """
    source = _source_stat(src, planned)
    condition: int | None = 0
    if look_first or is_local(dst):
        current = stat(dst)
        if current is not None and source is not None and same(src, dst, source, current):
            return False
        condition = _condition(current)
    try:
        put(src, dst, planned, condition)
    except TargetExists:  # the target appeared or changed since planning: look, then decide
        current = stat(dst)
        if current is not None and source is not None and same(src, dst, source, current):
            return False
        try:
            put(src, dst, planned, _condition(current))
        except TargetExists as exc:
            raise PermanentError(f"{dst} keeps changing while being copied, or {src} changed "
                                 "after planning") from exc
    return True


def _source_stat(src: str, planned: Planned) -> BlobStat | None:
    """What src holds for comparisons: a GCS source as planned (no request), a file as it is."""
    if not is_local(src):
        return BlobStat(planned.size, planned.crc32c) if planned.size is not None else None
    return stat(src)


def _condition(current: BlobStat | None) -> int | None:
    """The GCS precondition that replaces exactly what was looked at (0: nothing)."""
    return 0 if current is None else current.generation


def put(src: str, dst: str, planned: Planned, only_if_generation: int | None) -> BlobStat:
    """Copy src to dst by the path the pair of schemes allows; verified; the copy's stat.

    only_if_generation is a GCS precondition on dst (0: must not exist; N: must still be
    generation N); a failed one raises gcs.TargetExists.
    """
    if scheme_of(src) == scheme_of(dst):
        return store_for(src).copy(src, dst, planned, only_if_generation)
    if is_local(src):
        return store_for(dst).upload(path_of(src), dst, planned, only_if_generation)
    if is_local(dst):
        return _download(src, dst, planned)
    raise PermanentError(f"cannot copy {src} to {dst}: one side must be a file:// or both "
                         "the same scheme")


def _download(src: str, dst: str, planned: Planned) -> BlobStat:
    def check(temp: Path, size: int) -> None:  # what reached the disk, read back
        if size != planned.size or planned.crc32c and crc32c_of_file(temp) != planned.crc32c:
            raise TransientError(f"{dst}: bytes on disk differ from the planned {src}")

    size = receive(dst, lambda out: store_for(src).download(src, out, planned), check)
    return BlobStat(size, planned.crc32c)


def check_buckets(uris: Iterable[str]) -> None:
    """InputError unless every container (gs:// bucket) among uris is reachable."""
    by_scheme: dict[str, list[str]] = {}
    for uri in uris:
        by_scheme.setdefault(scheme_of(uri), []).append(uri)
    for group in by_scheme.values():
        store_for(group[0]).check(group)
