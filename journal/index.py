"""The record index: key hash -> planned entries, built lazily off the hot path.

Appends never touch it. A tracking row (`tracking`, name 'record_index') holds the last
event seq the index has caught up to; readers that need the index (history, snapshot,
verify, rebuild) first index the EntryPlanned events after it, in chunks of rows sorted by
key hash, advancing the tracking row in the same transaction as the rows it covers.

Rows are (khash, entry_id): the first 8 bytes of blake2b(key) as a signed 64-bit integer
and the seq of the EntryPlanned event (which `entries.planned_seq` holds). The index is a
pure function of the event log up to the tracked seq: it also keeps rows of entries a
restarted run has since forgotten, and queries drop those by joining `entries`. A key hash
only narrows the search: history reads the candidate entries' keys to find the positions.
"""
from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable

import msgspec

from .errors import JournalIntegrityError

NAME = "record_index"
# Rows gathered per transaction: bounds how long the journal's lock is kept from appends
# while catching up (about a second per million rows).
CHUNK_ROWS = 250_000

# Rows are gathered in a temporary table, one statement per event (the key hashes go in as
# one JSON array), then inserted sorted by key hash, so the inserts walk the index's B-tree
# in order instead of at random, and Python never builds or sorts a tuple per row.
_BUFFER = "temp.record_index_buffer"
_CREATE_BUFFER = f"CREATE TABLE IF NOT EXISTS {_BUFFER} (khash INTEGER NOT NULL, entry_id INTEGER NOT NULL)"
_ADD = f"INSERT INTO {_BUFFER} (khash, entry_id) SELECT value, ? FROM json_each(?)"
_FLUSH = (
    f"INSERT OR IGNORE INTO main.record_index (khash, entry_id) SELECT khash, entry_id FROM {_BUFFER}"
    " ORDER BY khash, entry_id"
)
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_json = msgspec.json.Encoder()


class _Keys(msgspec.Struct):
    """Just the keys of an EntryPlanned body: the rest (payload above all) is skipped."""

    keys: list[str]


class KeysHashes(msgspec.Struct):
    keys: list[str]
    hashes: list[str]


_keys_decoder = msgspec.msgpack.Decoder(_Keys)
keys_hashes_decoder = msgspec.msgpack.Decoder(KeysHashes)


def khash(key: str) -> int:
    """The key's index hash: blake2b-64 as a big-endian signed integer (SQLite's INTEGER)."""
    return _from_bytes(_blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def keys_of(seq: int, body: bytes) -> list[str]:
    try:
        return _keys_decoder.decode(body).keys
    except msgspec.DecodeError as exc:
        raise JournalIntegrityError(f"seq {seq}: EntryPlanned body does not decode: {exc}") from exc


class _Gather:
    """Collects one chunk's rows in the buffer; flush() moves them into the index."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.rows = 0
        conn.execute(_CREATE_BUFFER)
        conn.execute(f"DELETE FROM {_BUFFER}")

    def add(self, seq: int, body: bytes) -> None:
        blake, from_bytes = _blake2b, _from_bytes
        hashes = [from_bytes(blake(key.encode(), digest_size=8).digest(), "big", signed=True)
                  for key in keys_of(seq, body)]
        self.conn.execute(_ADD, (seq, _json.encode(hashes)))
        self.rows += len(hashes)

    def flush(self) -> None:
        self.conn.execute(_FLUSH)
        self.conn.execute(f"DELETE FROM {_BUFFER}")
        self.rows = 0


def tracked(conn: sqlite3.Connection, schema: str = "main") -> int:
    row = conn.execute(f"SELECT seq FROM {schema}.tracking WHERE name = ?", (NAME,)).fetchone()
    return 0 if row is None else int(row[0])


def set_tracked(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute("INSERT OR REPLACE INTO main.tracking (name, seq) VALUES (?, ?)", (NAME, seq))


def behind(conn: sqlite3.Connection) -> bool:
    """Whether events were appended since the index last caught up (cheap, read-only)."""
    last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    return bool(last > tracked(conn))


def catch_up_chunk(conn: sqlite3.Connection, max_rows: int | None = None) -> bool:
    """Index EntryPlanned events after the tracked seq until about max_rows (CHUNK_ROWS)
    rows are gathered; advance the tracking row to match. Runs inside the caller's write
    transaction. Returns True once the index covers every event in the log."""
    max_rows = CHUNK_ROWS if max_rows is None else max_rows
    start = tracked(conn)
    last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    gather, upto = _Gather(conn), last
    # The cursor streams one event at a time; `type` sits before `body` in the row, so the
    # bodies of other events (and their overflow pages) are never read.
    cursor = conn.execute(
        "SELECT seq, body FROM events WHERE seq > ? AND seq <= ? AND type = 'EntryPlanned'"
        " ORDER BY seq",
        (start, last),
    )
    try:
        for seq, body in cursor:
            gather.add(seq, body)
            if gather.rows >= max_rows:
                upto = seq
                break
    finally:
        cursor.close()
    gather.flush()
    set_tracked(conn, upto)
    return bool(upto == last)


def build(conn: sqlite3.Connection, events: Iterable[tuple[int, bytes]], upto: int) -> None:
    """Index the given EntryPlanned (seq, body) pairs into an empty index, skipping bodies
    that do not decode (verify reports those), and track `upto`."""
    gather = _Gather(conn)
    for seq, body in events:
        try:
            gather.add(seq, body)
        except JournalIntegrityError:
            continue
        if gather.rows >= CHUNK_ROWS:
            gather.flush()
    gather.flush()
    set_tracked(conn, upto)
