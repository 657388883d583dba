"""The record index on Postgres: the same rows as journal/index.py (key hash → EntryPlanned
seq, behind a tracking row), gathered a page of events at a time and inserted as two arrays
in one statement, sorted, so the B-tree is walked in order."""
from __future__ import annotations

from collections.abc import Iterable

from .. import index
from ..errors import JournalIntegrityError
from .connection import PgSql

PAGE = 256  # events per read: an EntryPlanned body carries its payload (up to ~100 kB)
_INSERT = ("INSERT INTO record_index (khash, entry_id) SELECT k, e FROM unnest(?::bigint[], ?::bigint[])"
           " AS t(k, e) ORDER BY k, e ON CONFLICT DO NOTHING")


class Gather:
    def __init__(self, conn: PgSql) -> None:
        self.conn = conn
        self.hashes: list[int] = []
        self.seqs: list[int] = []

    def add(self, seq: int, body: bytes) -> None:
        hashes = [index.khash(key) for key in index.keys_of(seq, body)]
        self.hashes += hashes
        self.seqs += [seq] * len(hashes)

    def flush(self) -> None:
        if self.hashes:
            self.conn.execute(_INSERT, (self.hashes, self.seqs))
        self.hashes, self.seqs = [], []


def _planned(conn: PgSql, after: int, upto: int) -> Iterable[tuple[int, bytes]]:
    while True:
        page = conn.execute("SELECT seq, body FROM events WHERE seq > ? AND seq <= ?"
                            " AND type = 'EntryPlanned' ORDER BY seq LIMIT ?", (after, upto, PAGE)).fetchall()
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1][0]


def catch_up_chunk(conn: PgSql, max_rows: int | None = None) -> bool:
    """journal/index.py's catch_up_chunk, for Postgres."""
    max_rows = index.CHUNK_ROWS if max_rows is None else max_rows
    start = tracked(conn)
    last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    gather, upto = Gather(conn), last
    for seq, body in _planned(conn, start, last):
        gather.add(seq, body)
        if len(gather.hashes) >= max_rows:
            upto = seq
            break
    gather.flush()
    set_tracked(conn, upto)
    return bool(upto == last)


def build(conn: PgSql, upto: int) -> None:
    """Index every EntryPlanned up to `upto` into an empty index, skipping bodies that do not
    decode (verify reports those)."""
    gather = Gather(conn)
    for seq, body in _planned(conn, 0, upto):
        try:
            gather.add(seq, body)
        except JournalIntegrityError:
            continue
        if len(gather.hashes) >= index.CHUNK_ROWS:
            gather.flush()
    gather.flush()
    set_tracked(conn, upto)


def tracked(conn: PgSql, table: str = "tracking") -> int:
    row = conn.execute(f"SELECT seq FROM {table} WHERE name = ?", (index.NAME,)).fetchone()
    return 0 if row is None else int(row[0])


def set_tracked(conn: PgSql, seq: int) -> None:
    conn.execute("INSERT INTO tracking (name, seq) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                 " SET seq = excluded.seq", (index.NAME, seq))
