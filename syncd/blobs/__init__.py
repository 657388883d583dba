"""Blob stores, picked by URI scheme. Only `file://` lives here for now; `gs://` is its own issue."""
from __future__ import annotations

from ..errors import InputError
from .base import BlobCopy, BlobStore
from .local import LocalBlobStore

__all__ = ["BlobCopy", "BlobStore", "LocalBlobStore", "store_for"]

_LOCAL = LocalBlobStore()


def store_for(uri: str) -> BlobStore:
    if uri.startswith("file://"):
        return _LOCAL
    scheme = uri.split("://", 1)[0] if "://" in uri else uri
    raise InputError(f"unsupported blob URI scheme '{scheme}' in {uri}")
