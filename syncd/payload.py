"""How an entry's rows are stored in the journal: msgpack, zlib-compressed, hashed per row."""
from __future__ import annotations

import hashlib
import zlib
from typing import Any, Sequence

import msgspec

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[list[Any]])


def row_hash(row: Sequence[Any]) -> str:
    return hashlib.blake2b(_encoder.encode(row), digest_size=16).hexdigest()


def pack_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    # Level 1: most of the size win for a fraction of the CPU of the default level.
    return zlib.compress(_encoder.encode(rows), 1)


def unpack_rows(payload: bytes) -> list[list[Any]]:
    return _decoder.decode(zlib.decompress(payload))
