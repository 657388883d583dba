"""SQLite record store: one database file per environment.

Sources are opened read-only (`mode=ro`), so a copy can never write its source. Work runs
in one worker thread per store (sqlite3 releases the GIL while it steps), serialised by a
CapacityLimiter because a sqlite3 connection is not safe for concurrent use.
"""
from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import anyio
import msgspec
import sqlite_utils

from .. import failpoints
from ..errors import InputError, PermanentError, SchemaError, StoreUnavailable, TransientError
from ..filters import Filter, to_sql
from ..schema import Entity, TableInfo
from .base import Patch, Row
from .sqlite_describe import describe

T = TypeVar("T")
log = logging.getLogger("syncd.sqlite")

# A locked database: each statement waits BUSY_TIMEOUT_MS (then the applier retries the entry);
# opening one waits up to SYNCD_LOCK_TIMEOUT seconds in slices, saying so every SAY_EVERY s.
BUSY_TIMEOUT_MS = 5000
LOCK_TIMEOUT_VAR = "SYNCD_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 30.0
WAIT_SLICE_MS = 250
SAY_EVERY = 5.0
WRITE_CACHE_KIB = -65536  # page cache of a store once it writes (negative: KiB, SQLite's way)
_json = msgspec.json.Encoder()
# Keys travel to SQLite as one JSON array bound to a single parameter: no per-key
# placeholders, no limit on the number of keys, and nothing pasted into SQL.
_KEYS_IN = "IN (SELECT value FROM json_each(?))"


def quote(identifier: str) -> str:
    """Quote an identifier that the schema has already validated."""
    return '"' + identifier.replace('"', '""') + '"'


class SqliteStore:
    def __init__(self, name: str, path: Path, *, readonly: bool) -> None:
        self.name = name
        self.path = path
        self._conn = _connect(name, path, readonly)
        self._limiter = anyio.CapacityLimiter(1)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(_mapped, fn, *args), limiter=self._limiter)

    async def describe(self) -> list[TableInfo]:
        return await self._run(lambda: describe(sqlite_utils.Database(self._conn)))

    async def select_page(
        self, entity: Entity, filters: Sequence[Filter], after: Any | None, limit: int,
        order_by: str | None = None,
    ) -> list[Row]:
        where, params = to_sql(filters, entity)
        clauses = [f"({where})"] if where else []
        key = quote(entity.key)
        if order_by is None:
            order = key
            if after is not None:
                clauses.append(f"{key} > ?")
                params = [*params, after]
        else:
            if order_by not in entity.columns:
                raise SchemaError(f"cannot order {entity.name!r} by {order_by!r}: not a column")
            column = quote(order_by)
            order = f"{column}, {key}"
            clauses.append(f"{column} IS NOT NULL")
            if after is not None:
                clauses.append(f"({column} > ? OR ({column} = ? AND {key} > ?))")
                params = [*params, after[0], after[0], after[1]]
        sql = self._select(entity, " AND ".join(clauses)) + f" ORDER BY {order} LIMIT ?"
        return await self._run(self._query, sql, [*params, limit])

    async def select_all(self, entity: Entity, filters: Sequence[Filter]) -> list[Row]:
        # No ORDER BY/LIMIT: SQLite answers straight from the link's index, no sort, one pass.
        where, params = to_sql(filters, entity)
        return await self._run(self._query, self._select(entity, where), params)

    @staticmethod
    def _select(entity: Entity, where: str) -> str:
        sql = f"SELECT {_cols(entity.columns)} FROM {quote(entity.name)}"
        return f"{sql} WHERE {where}" if where else sql

    async def fetch(self, entity: Entity, keys: Sequence[Any]) -> list[Row]:
        sql = (f"SELECT {_cols(entity.columns)} FROM {quote(entity.name)} "
               f"WHERE {quote(entity.key)} {_KEYS_IN} ORDER BY {quote(entity.key)}")
        return await self._run(self._query, sql, [_json.encode(list(keys))])

    async def existing_keys(self, entity: Entity, keys: Sequence[Any]) -> set[Any]:
        return await self._run(self._existing, entity, list(keys))

    async def max_key(self, entity: Entity) -> int | None:
        sql = (f"SELECT MAX({quote(entity.key)}) FROM {quote(entity.name)} "
               f"WHERE typeof({quote(entity.key)}) = 'integer'")
        rows = await self._run(self._query, sql, [])
        return rows[0][0] if rows else None

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        await self._run(self._conn.execute, "BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            await self._run(self._conn.execute, "ROLLBACK")
            raise
        await self._run(self._conn.execute, "COMMIT")

    async def count(self, entity: Entity, filters: Sequence[Filter]) -> int:
        where, params = to_sql(filters, entity)
        sql = f"SELECT COUNT(*) FROM {quote(entity.name)}" + (f" WHERE {where}" if where else "")
        rows = await self._run(self._query, sql, params)
        return int(rows[0][0])

    async def match_natural(
        self, entity: Entity, values: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], Any]:
        nk = entity.natural_key
        sql = (f"SELECT {_cols(nk)}, {quote(entity.key)} FROM {quote(entity.name)} "
               f"WHERE {quote(nk[0])} {_KEYS_IN}")
        rows = await self._run(self._query, sql, [_json.encode([v[0] for v in values])])
        wanted = set(values)
        return {tuple(r[:-1]): r[-1] for r in rows if tuple(r[:-1]) in wanted}

    async def create(self, entity: Entity, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> list[bool]:
        return await self._run(self._create, entity, list(columns), rows)

    async def update(self, entity: Entity, patches: Sequence[Patch]) -> list[bool]:
        return await self._run(self._update, entity, patches)

    async def delete(self, entity: Entity, keys: Sequence[Any]) -> list[bool]:
        return await self._run(self._delete, entity, list(keys))

    async def close(self) -> None:
        self._conn.close()

    # -- worker-thread side -------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def _existing(self, entity: Entity, keys: list[Any]) -> set[Any]:
        sql = f"SELECT {quote(entity.key)} FROM {quote(entity.name)} WHERE {quote(entity.key)} {_KEYS_IN}"
        return {r[0] for r in self._conn.execute(sql, [_json.encode(keys)])}

    def _create(self, entity: Entity, columns: list[str], rows: Sequence[Sequence[Any]]) -> list[bool]:
        sql = (f"INSERT INTO {quote(entity.name)} ({_cols(columns)}) "
               f"VALUES ({', '.join('?' * len(columns))})")
        try:  # the planner saw these keys absent: usually every row is new
            with self._transaction():
                self._conn.executemany(sql, rows)
                failpoints.hit("store.before-commit")
            return [True] * len(rows)
        except sqlite3.IntegrityError:
            pass  # some exist now (a retried entry, a concurrent writer): check them one by one
        key_at = columns.index(entity.key)
        with self._transaction():
            present = self._existing(entity, [r[key_at] for r in rows])
            self._conn.executemany(sql, [r for r in rows if r[key_at] not in present])
            failpoints.hit("store.before-commit")
        return [r[key_at] not in present for r in rows]

    def _update(self, entity: Entity, patches: Sequence[Patch]) -> list[bool]:
        """Patches that set the same values (a move's `project_id = 7` on thousands of rows)
        go as one `UPDATE … WHERE key IN (…)`: the row work stays in SQLite."""
        groups: dict[Any, list[int]] = {}
        for i, (_, fields) in enumerate(patches):
            try:
                groups.setdefault(tuple(fields.items()), []).append(i)
            except TypeError:  # an unhashable value: its own group
                groups[("row", i)] = [i]
        changed = [False] * len(patches)
        with self._transaction():
            for members in groups.values():
                fields = patches[members[0]][1]
                keys = [patches[i][0] for i in members]
                present = self._existing(entity, keys) if len(keys) > 1 else set(keys)
                sets = ", ".join(f"{quote(c)} = ?" for c in fields)
                sql = f"UPDATE {quote(entity.name)} SET {sets} WHERE {quote(entity.key)} {_KEYS_IN}"
                count = self._conn.execute(sql, [*fields.values(), _json.encode(keys)]).rowcount
                for i in members:
                    changed[i] = count > 0 and patches[i][0] in present
        return changed

    def _delete(self, entity: Entity, keys: list[Any]) -> list[bool]:
        sql = f"DELETE FROM {quote(entity.name)} WHERE {quote(entity.key)} = ?"
        with self._transaction():
            return [self._conn.execute(sql, [key]).rowcount > 0 for key in keys]

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._conn)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error: one transaction per entry; inside
    `atomic()` (a transaction already open) a savepoint instead, so the entry's own rollback
    leaves the rest of the outer transaction alone."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._nested = False

    def __enter__(self) -> None:
        if not self._conn.in_transaction:
            # A store that writes keeps more pages: entries insert keys all over large
            # indexes (random UUIDs), and at 2 MiB every entry read back and wrote out most
            # of them (a 1M-row transfer: 35 s → 30.5 s). Only writers pay its memory.
            self._conn.execute(f"PRAGMA cache_size = {WRITE_CACHE_KIB}")
        self._nested = self._conn.in_transaction
        self._conn.execute("SAVEPOINT syncd_entry" if self._nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not self._nested:
            self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
            return
        if exc_type is not None:
            self._conn.execute("ROLLBACK TO syncd_entry")
        self._conn.execute("RELEASE syncd_entry")


def _cols(columns: Sequence[str]) -> str:
    return ", ".join(quote(c) for c in columns)


def _connect(name: str, path: Path, readonly: bool) -> sqlite3.Connection:
    if not path.is_file():
        raise InputError(f"environment '{name}': database file not found: {path}")
    uri = f"file:{path}?mode={'ro' if readonly else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        if not readonly:
            conn.execute("PRAGMA foreign_keys = ON")
        _wait_readable(name, path, conn)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:  # after the wait: this reads the schema
            # Dirty pages stay in memory until the commit (an entry's worth): spilling them
            # mid-transaction would take the EXCLUSIVE lock early, and in a rollback-journal
            # database that shuts out readers (a planner checking what exists) for the rest
            # of the entry instead of only for its commit.
            conn.execute("PRAGMA cache_spill = OFF")
    except sqlite3.DatabaseError as exc:
        raise InputError(f"environment '{name}': not a readable SQLite database: {path} ({exc})") from exc
    return conn


def _wait_readable(name: str, path: Path, conn: sqlite3.Connection) -> None:
    """Read the schema, waiting while another process holds the database locked: up to
    lock_timeout() seconds, saying so on stderr every few seconds, then StoreUnavailable."""
    conn.execute(f"PRAGMA busy_timeout = {WAIT_SLICE_MS}")
    started = time.monotonic()
    said = -math.inf
    while True:
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc):
                raise
        waited, limit = time.monotonic() - started, lock_timeout()
        if waited >= limit:
            raise StoreUnavailable(f"environment '{name}': database {path} is locked by another "
                                   f"process; gave up after {limit:g} s ({LOCK_TIMEOUT_VAR})")
        if waited - said >= SAY_EVERY:
            said = waited
            log.warning("environment '%s': database %s is locked by another process; waiting "
                        "(%.0f s of %g s, %s)", name, path, waited, limit, LOCK_TIMEOUT_VAR)


def lock_timeout() -> float:
    """Seconds to wait for a locked database before giving up (SYNCD_LOCK_TIMEOUT)."""
    text = os.environ.get(LOCK_TIMEOUT_VAR, "")
    try:
        value = float(text) if text else DEFAULT_LOCK_TIMEOUT
    except ValueError:
        raise InputError(f"{LOCK_TIMEOUT_VAR}={text!r} is not a number of seconds") from None
    if not value >= 0:
        raise InputError(f"{LOCK_TIMEOUT_VAR}={text!r} must be 0 or more seconds")
    return value


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _mapped(fn: Callable[..., T], *args: Any) -> T:
    """Map sqlite3 errors to syncd's tree at the adapter edge."""
    try:
        return fn(*args)
    except sqlite3.OperationalError as exc:
        if _is_locked(exc):
            raise TransientError(f"sqlite: {exc}") from exc
        raise PermanentError(f"sqlite: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise PermanentError(f"sqlite: {exc}") from exc
