"""How an entry's rows are stored in the journal: msgpack, zlib-compressed, hashed per row."""
from __future__ import annotations

import hashlib
import zlib
from typing import Any, Collection, Sequence

import msgspec

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[list[Any]])


def row_hash(row: Sequence[Any], json_at: Sequence[int] = ()) -> str:
    """blake2b-128 of the row's msgpack. The values at `json_at` (the target's JSON columns)
    are hashed as canonical JSON (keys sorted, no spaces): the same document hashes the same
    whether SQLite keeps it as written or Postgres' jsonb reorders it."""
    if json_at:
        row = list(row)
        for i in json_at:
            row[i] = canonical_json(row[i])
    return hashlib.blake2b(_encoder.encode(row), digest_size=16).hexdigest()


def update_hash(row: Sequence[Any], json_columns: Collection[str]) -> str:
    """row_hash of an update row `[key, fields, before?]`, its JSON columns' values taken as
    canonical JSON."""
    return row_hash([row[0], *({c: canonical_json(v) if c in json_columns else v for c, v in part.items()}
                               for part in row[1:])])


def canonical_json(value: Any) -> Any:
    """JSON text as sorted, compact JSON; anything else (NULL, text that is not JSON) as it is."""
    if not isinstance(value, (str, bytes)):
        return value
    try:
        return msgspec.json.encode(msgspec.json.decode(value), order="sorted").decode()
    except msgspec.DecodeError:
        return value


def json_positions(columns: Sequence[str], json_columns: Collection[str]) -> tuple[int, ...]:
    return tuple(i for i, c in enumerate(columns) if c in json_columns)


def pack_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    # Level 1: most of the size win for a fraction of the CPU of the default level.
    return zlib.compress(_encoder.encode(rows), 1)


def pack_and_hash(rows: Sequence[Sequence[Any]], json_at: Sequence[int] = ()) -> tuple[bytes, list[str]]:
    """pack_rows(rows) and [row_hash(r, json_at) for r in rows], each row encoded once: a
    msgpack array is its header followed by its items' encodings, so the bytes hashed are
    the bytes stored (rows with JSON columns are hashed in their canonical form instead)."""
    encoded = [_encoder.encode(r) for r in rows]
    if json_at:
        hashes = [row_hash(r, json_at) for r in rows]
    else:
        hashes = [hashlib.blake2b(b, digest_size=16).hexdigest() for b in encoded]
    return zlib.compress(_array_header(len(encoded)) + b"".join(encoded), 1), hashes


def _array_header(n: int) -> bytes:
    """msgpack's array header for n items (fixarray, array 16 or array 32)."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def unpack_rows(payload: bytes) -> list[list[Any]]:
    return _decoder.decode(zlib.decompress(payload))
