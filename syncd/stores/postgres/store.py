"""The Postgres RecordStore: psycopg 3, a small async connection pool, autocommit reads and
one transaction per write call.

Rows leave in canonical form (values.py) and arrive in it. Creates COPY straight into the
table; when a key is already there, the same transaction falls back to COPY into a temporary
table and one `INSERT … SELECT … ON CONFLICT (key) DO NOTHING`, which says exactly which rows
were created. A sequence feeding the key is then moved past the keys written.
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors, sql
from psycopg_pool import AsyncConnectionPool

from ... import failpoints
from ...errors import InputError, PermanentError, SchemaError, StoreError, TransientError
from ...filters import Filter
from ...schema import Entity, TableInfo
from ..base import Patch, Row
from . import catalog
from .catalog import PgColumn
from .url import PgUrl
from .values import (
    COPY_CHECKED, TEXT_CHECKED, Unconvertible, any_of, canonical, fast_params, param,
    select_expr,
)
from .where import where

POOL_SIZE = 4  # `syncd serve` answers requests concurrently; a sync uses one or two
CONNECT_TIMEOUT = 10
CHUNK = 10_000  # keys per `= ANY(%s)` lookup
_ROW_NUMBER = "_syncd_row"  # the temporary table's column numbering the COPY's rows
_COPY_LINE = re.compile(r"COPY \S+, line (\d+)(?:, column (\S+?):)?")


class PostgresStore:
    def __init__(self, name: str, url: PgUrl, password: str | None, *, readonly: bool) -> None:
        self.name = name
        self.url = url
        self.path = str(url)  # what `syncd serve` prints
        self.readonly = readonly
        self._kwargs = connect_kwargs(url, password, readonly)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._pinned: psycopg.AsyncConnection[Any] | None = None  # atomic()'s connection
        self._columns: dict[str, dict[str, PgColumn]] = {}
        self._sequences: dict[str, str | None] = {}

    # -- connection ----------------------------------------------------------------------------

    async def _open(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """Connect once to check the database and schema (InputError, before any write), then
        keep a pool: lost connections are replaced by it, the call is retried by the applier."""
        if self._pool is None:
            try:
                conn = await psycopg.AsyncConnection.connect(**self._kwargs)
            except psycopg.Error as exc:
                raise InputError(f"environment '{self.name}': cannot connect to "
                                 f"{self.url.where()}: {_first_line(exc)}") from None
            async with conn:
                found = await (await conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.url.schema])).fetchone()
            if found is None:
                raise InputError(f"environment '{self.name}': schema {self.url.schema!r} does "
                                 f"not exist in {self.url.host}:{self.url.port}/{self.url.dbname}")
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                "", kwargs=self._kwargs, min_size=1, max_size=POOL_SIZE, open=False,
                name=f"syncd-{self.name}", check=AsyncConnectionPool.check_connection)
            try:
                await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            except psycopg.Error as exc:
                await pool.close()
                raise InputError(f"environment '{self.name}': cannot connect to "
                                 f"{self.url.where()}: {_first_line(exc)}") from None
            self._pool = pool
        return self._pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._pinned is not None:  # inside atomic(): everything on its connection
            try:
                yield self._pinned
            except psycopg.Error as exc:
                raise _mapped(exc) from exc
            return
        pool = await self._open()
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise _mapped(exc) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self.readonly:
            raise PermanentError(f"environment '{self.name}' is opened read-only")
        async with self._conn() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        """One transaction on one connection; each write's own transaction() nests in it as
        a savepoint (psycopg does that for a transaction block inside another)."""
        async with self._transaction() as conn:
            self._pinned = conn
            try:
                yield
            finally:
                self._pinned = None

    async def count(self, entity: Entity, filters: Sequence[Filter]) -> int:
        types = await self._types(entity)
        clause, params = where(filters, entity, types)
        async with self._conn() as conn:
            cur = await conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                self._table(entity), clause), params)
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- schema --------------------------------------------------------------------------------

    async def describe(self) -> list[TableInfo]:
        async with self._conn() as conn:
            tables, self._columns = await catalog.describe(conn, self.url.schema)
        return tables

    async def _types(self, entity: Entity) -> dict[str, PgColumn]:
        if entity.name not in self._columns:
            async with self._conn() as conn:
                found = await catalog.columns(conn, self.url.schema, entity.name)
            if entity.name not in found:
                raise PermanentError(f"environment '{self.name}': no table "
                                     f"{self.url.schema}.{entity.name}")
            self._columns[entity.name] = {c.name: c for c, _ in found[entity.name]}
        return self._columns[entity.name]

    def _table(self, entity: Entity) -> sql.Identifier:
        return sql.Identifier(self.url.schema, entity.name)

    async def _select(self, entity: Entity) -> tuple[sql.Composable, dict[str, PgColumn]]:
        types = await self._types(entity)
        try:
            exprs = [select_expr(types[c]) for c in entity.columns]
        except KeyError as exc:
            raise PermanentError(f"{entity.name}: no column {exc.args[0]!r} in "
                                 f"{self.url.schema}.{entity.name}") from None
        return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs),
                                                   self._table(entity)), types

    # -- reads ---------------------------------------------------------------------------------

    async def select_page(
        self, entity: Entity, filters: Sequence[Filter], after: Any | None, limit: int,
        order_by: str | None = None,
    ) -> list[Row]:
        select, types = await self._select(entity)
        clause, params = where(filters, entity, types)
        key = types[entity.key]
        clauses: list[sql.Composable] = [clause]
        if order_by is None:
            order: sql.Composable = sql.Identifier(entity.key)
            if after is not None:
                clauses.append(sql.SQL("{} > %s").format(sql.Identifier(entity.key)))
                params.append(_param(entity, key, after))
        else:
            if order_by not in entity.columns or order_by not in types:
                raise SchemaError(f"cannot order {entity.name!r} by {order_by!r}: not a column")
            column = sql.Identifier(order_by)
            order = sql.SQL("{}, {}").format(column, sql.Identifier(entity.key))
            clauses.append(sql.SQL("{} IS NOT NULL").format(column))
            if after is not None:
                clauses.append(sql.SQL("({c} > %s OR ({c} = %s AND {k} > %s))").format(
                    c=column, k=sql.Identifier(entity.key)))
                mark = _param(entity, types[order_by], after[0])
                params += [mark, mark, _param(entity, key, after[1])]
        query = sql.SQL("{} WHERE {} ORDER BY {}").format(
            select, sql.SQL(" AND ").join(clauses), order)
        if limit >= 0:  # a negative limit means none, as in SQLite
            query = sql.SQL("{} LIMIT %s").format(query)
            params.append(limit)
        return await self._rows(entity, types, query, params)

    async def select_all(self, entity: Entity, filters: Sequence[Filter]) -> list[Row]:
        select, types = await self._select(entity)
        clause, params = where(filters, entity, types)
        return await self._rows(entity, types, sql.SQL("{} WHERE {}").format(select, clause), params)

    async def fetch(self, entity: Entity, keys: Sequence[Any]) -> list[Row]:
        select, types = await self._select(entity)
        rows: list[Row] = []
        for any_sql, chunk in self._key_chunks(types[entity.key], keys):
            query = sql.SQL("{} WHERE {} = {} ORDER BY {}").format(
                select, sql.Identifier(entity.key), any_sql, sql.Identifier(entity.key))
            rows += await self._rows(entity, types, query, [chunk])
        return sorted(rows, key=lambda r: r[entity.index(entity.key)]) if len(keys) > CHUNK else rows

    async def existing_keys(self, entity: Entity, keys: Sequence[Any]) -> set[Any]:
        types = await self._types(entity)
        key = types[entity.key]
        found: set[Any] = set()
        async with self._conn() as conn:
            for any_sql, chunk in self._key_chunks(key, keys):
                query = sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
                    select_expr(key), self._table(entity), sql.Identifier(entity.key), any_sql)
                found.update(r[0] for r in await (await conn.execute(query, [chunk])).fetchall())
        return found

    async def max_key(self, entity: Entity) -> int | None:
        types = await self._types(entity)
        if types[entity.key].kind != "int":
            return None
        async with self._conn() as conn:
            cur = await conn.execute(sql.SQL("SELECT max({}) FROM {}").format(
                sql.Identifier(entity.key), self._table(entity)))
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def match_natural(
        self, entity: Entity, values: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], Any]:
        types = await self._types(entity)
        nk = [types[c] for c in entity.natural_key]
        wanted = set(values)
        found: dict[tuple[Any, ...], Any] = {}
        async with self._conn() as conn:
            for any_sql, chunk in self._key_chunks(nk[0], [v[0] for v in values]):
                query = sql.SQL("SELECT {}, {} FROM {} WHERE {} = {}").format(
                    sql.SQL(", ").join(select_expr(c) for c in nk), select_expr(types[entity.key]),
                    self._table(entity), sql.Identifier(nk[0].name), any_sql)
                for row in await (await conn.execute(query, [chunk])).fetchall():
                    if tuple(row[:-1]) in wanted:
                        found[tuple(row[:-1])] = row[-1]
        return found

    def _key_chunks(self, column: PgColumn, keys: Sequence[Any]) -> list[tuple[sql.Composable, Any]]:
        """`ANY(…)` and its parameter for the keys, CHUNK at a time; a key the column cannot
        hold (text for an integer key) cannot be there and is left out."""
        unique = list(dict.fromkeys(keys))
        usable = fast_params(column, unique)
        if usable is None:
            usable = []
            for key in unique:
                try:
                    if key is not None:
                        usable.append(param(column, key))
                except Unconvertible:
                    pass
        return [any_of(column, usable[i:i + CHUNK]) for i in range(0, len(usable), CHUNK)]

    async def _rows(self, entity: Entity, types: dict[str, PgColumn], query: sql.Composed,
                    params: Sequence[Any]) -> list[Row]:
        async with self._conn() as conn:
            cur = conn.cursor()
            await cur.execute(query, params)
            rows: list[Row] = await cur.fetchall()
        arrays = [i for i, c in enumerate(entity.columns) if types[c].kind == "array"]
        if arrays:  # the only values psycopg loads as Python objects (UUID, datetime…)
            rows = [_canonical_at(row, arrays) for row in rows]
        return rows

    # -- writes --------------------------------------------------------------------------------

    async def create(self, entity: Entity, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> list[bool]:
        if not rows:
            return []
        types = await self._types(entity)
        cols = self._columns_of(entity, types, columns)
        prepared = _prepared(entity, cols, rows)
        async with self._transaction() as conn:
            try:  # the planner saw these keys absent: usually every row is new
                async with conn.transaction():  # a savepoint
                    await self._copy(conn, entity, self._table(entity), columns, prepared)
                created = set(range(len(rows)))
            except pg_errors.UniqueViolation:
                # some exist now (a resumed or retried entry, a concurrent writer)
                created = await self._create_exact(conn, entity, columns, prepared)
            if created:
                await self._advance_sequence(conn, entity)
            failpoints.hit("store.before-commit")
        return [i in created for i in range(len(rows))]

    async def _create_exact(self, conn: psycopg.AsyncConnection[Any], entity: Entity,
                            columns: Sequence[str], rows: list[Sequence[Any]]) -> set[int]:
        """COPY into a temporary table, then one INSERT … ON CONFLICT (key) DO NOTHING: the
        positions of the rows it created. Another unique constraint still refuses a row."""
        table, names = self._table(entity), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        number, key = sql.Identifier(_ROW_NUMBER), sql.Identifier(entity.key)
        await conn.execute(sql.SQL(
            "CREATE TEMPORARY TABLE _syncd_rows ON COMMIT DROP AS "
            "SELECT 0::int AS {}, {} FROM {} WITH NO DATA").format(number, names, table))
        await self._copy(conn, entity, sql.Identifier("_syncd_rows"), columns,
                         [(i, *row) for i, row in enumerate(rows)], numbered=True)
        cur = await conn.execute(sql.SQL(
            "WITH created AS (INSERT INTO {t} ({names}) OVERRIDING SYSTEM VALUE "
            "SELECT {names} FROM _syncd_rows ORDER BY {n} ON CONFLICT ({k}) DO NOTHING "
            "RETURNING {k}) SELECT r.{n} FROM _syncd_rows r JOIN created c ON c.{k} = r.{k}"
        ).format(t=table, names=names, n=number, k=key))
        return {r[0] for r in await cur.fetchall()}

    def _columns_of(self, entity: Entity, types: dict[str, PgColumn],
                    columns: Sequence[str]) -> list[PgColumn]:
        missing = [c for c in columns if c not in types]
        if missing:
            raise PermanentError(f"{entity.name}: no column {missing[0]!r} in "
                                 f"{self.url.schema}.{entity.name}")
        if entity.key not in columns:
            raise PermanentError(f"{entity.name}: rows to create must carry the key {entity.key!r}")
        return [types[c] for c in columns]

    async def _copy(self, conn: psycopg.AsyncConnection[Any], entity: Entity,
                    table: sql.Identifier, columns: Sequence[str], rows: list[Sequence[Any]],
                    numbered: bool = False) -> None:
        """COPY rows in (text format: Postgres parses each value by its column's type)."""
        names = sql.SQL(", ").join(sql.Identifier(c) for c in (
            *((_ROW_NUMBER,) if numbered else ()), *columns))
        try:
            async with conn.cursor().copy(
                    sql.SQL("COPY {} ({}) FROM STDIN").format(table, names)) as copy:
                for row in rows:
                    await copy.write_row(row)
        except psycopg.DataError as exc:  # a value the column's type cannot parse
            shift = 1 if numbered else 0
            raise PermanentError(_copy_error(entity, columns, rows, shift, exc)) from exc

    async def _advance_sequence(self, conn: psycopg.AsyncConnection[Any], entity: Entity) -> None:
        """After explicit keys land in a column a sequence feeds (serial, identity), move the
        sequence past the largest key, so the application's next plain INSERT does not collide."""
        if entity.name not in self._sequences:
            cur = await conn.execute("SELECT pg_get_serial_sequence(format('%%I.%%I', %s::text, "
                                     "%s::text), %s)", [self.url.schema, entity.name, entity.key])
            found = await cur.fetchone()
            self._sequences[entity.name] = found[0] if found else None
        sequence = self._sequences[entity.name]
        if sequence is None:
            return
        await conn.execute(sql.SQL(
            "SELECT setval(%s::regclass, GREATEST(m, COALESCE(pg_sequence_last_value(%s::regclass), m))) "
            "FROM (SELECT max({k}) AS m FROM {t}) AS top WHERE m IS NOT NULL").format(
                k=sql.Identifier(entity.key), t=self._table(entity)), [sequence, sequence])

    async def update(self, entity: Entity, patches: Sequence[Patch]) -> list[bool]:
        if not patches:
            return []
        types = await self._types(entity)
        key = types[entity.key]
        statements: list[tuple[sql.Composed, list[Any]] | None] = []
        for patch_key, fields in patches:
            if not fields:
                raise PermanentError(f"{entity.name}: an update of {patch_key!r} names no field")
            cols = self._columns_of(entity, types, [entity.key, *fields])[1:]
            values = [_checked(entity, patch_key, c, v) for c, v in zip(cols, fields.values())]
            target = _maybe(key, patch_key)
            statements.append(None if target is _ABSENT else (sql.SQL(
                "UPDATE {} SET {} WHERE {} = %s").format(
                    self._table(entity),
                    sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in fields),
                    sql.Identifier(entity.key)), [*values, target]))
        return await self._each(statements)

    async def delete(self, entity: Entity, keys: Sequence[Any]) -> list[bool]:
        if not keys:
            return []
        key = (await self._types(entity))[entity.key]
        query = sql.SQL("DELETE FROM {} WHERE {} = %s").format(
            self._table(entity), sql.Identifier(entity.key))
        targets = [_maybe(key, k) for k in keys]
        return await self._each([None if t is _ABSENT else (query, [t]) for t in targets])

    async def _each(self, statements: Sequence[tuple[sql.Composed, list[Any]] | None]) -> list[bool]:
        """One statement per row, pipelined in one transaction; True where it touched a row."""
        async with self._transaction() as conn:
            cursors: list[psycopg.AsyncCursor[Any] | None] = []
            async with conn.pipeline():
                for statement in statements:
                    if statement is None:
                        cursors.append(None)
                        continue
                    cur = conn.cursor()
                    await cur.execute(statement[0], statement[1])
                    cursors.append(cur)
            failpoints.hit("store.before-commit")
        return [cur is not None and cur.rowcount > 0 for cur in cursors]


# -- helpers ---------------------------------------------------------------------------------------

_ABSENT = object()


def _maybe(column: PgColumn, key: Any) -> Any:
    """The key as a parameter, or _ABSENT when the column cannot hold it (so no row has it)."""
    try:
        return _ABSENT if key is None else param(column, key)
    except Unconvertible:
        return _ABSENT


def _param(entity: Entity, column: PgColumn, value: Any) -> Any:
    try:
        return param(column, value)
    except Unconvertible as exc:
        raise SchemaError(f"{entity.name}.{column.name}: {exc}") from None


def _checked(entity: Entity, key: Any, column: PgColumn, value: Any) -> Any:
    try:
        return param(column, value)
    except Unconvertible as exc:
        raise PermanentError(_cannot(entity, key, column.name, value, str(exc))) from None


def _prepared(entity: Entity, columns: list[PgColumn], rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Rows with the values Postgres would refuse or silently change converted or refused
    (values.COPY_CHECKED); other values are parsed by Postgres itself during the COPY."""
    out = list(rows)
    key_at = next(i for i, c in enumerate(columns) if c.name == entity.key)
    for i, column in enumerate(columns):
        if column.kind not in COPY_CHECKED:
            continue
        passes = (type(None),) if column.kind in TEXT_CHECKED else (str, type(None))
        for j in [j for j, row in enumerate(out) if type(row[i]) not in passes]:
            row = list(out[j])
            row[i] = _checked(entity, row[key_at], column, row[i])
            out[j] = row
    return out


def _canonical_at(row: Row, positions: list[int]) -> Row:
    values = list(row)
    for i in positions:
        values[i] = canonical(values[i])
    return tuple(values)


def _cannot(entity: Entity, key: Any, column: str, value: Any, why: str) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"{entity.name} {key!r}: column {column!r}: cannot write {shown}: {why}"


def _copy_error(entity: Entity, columns: Sequence[str], rows: list[Sequence[Any]], shift: int,
                exc: psycopg.Error) -> str:
    """Postgres names the COPY line and column that it could not parse: name the record
    (`shift`: values before the columns in each row, the row number)."""
    match = _COPY_LINE.search(exc.diag.context or "")
    why = exc.diag.message_primary or _first_line(exc)
    if not match or not 1 <= int(match[1]) <= len(rows):
        return f"{entity.name}: {why}"
    row = rows[int(match[1]) - 1][shift:]
    column = match[2] or "?"
    value = row[list(columns).index(column)] if column in columns else None
    return _cannot(entity, row[list(columns).index(entity.key)], column, value, why)


def connect_kwargs(url: PgUrl, password: str | None, readonly: bool) -> dict[str, Any]:
    # UTC sessions: timestamptz values read and written without an offset mean UTC.
    options = "-c TimeZone=UTC -c DateStyle=ISO,YMD"
    if readonly:  # a source can never be written, whatever the SQL
        options += " -c default_transaction_read_only=on"
    kwargs: dict[str, Any] = {
        "host": url.host, "port": url.port, "dbname": url.dbname, "autocommit": True,
        "options": options, "connect_timeout": CONNECT_TIMEOUT, "application_name": "syncd",
        **dict(url.options),
    }
    if url.user:
        kwargs["user"] = url.user
    if password is not None:
        kwargs["password"] = password
    return kwargs


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _mapped(exc: psycopg.Error) -> StoreError:
    """psycopg's errors in syncd's tree: what a retry may cure is transient."""
    message = f"postgres: {_first_line(exc)}"
    detail = getattr(exc.diag, "message_detail", None) if hasattr(exc, "diag") else None
    if detail:
        message += f" ({detail})"
    if isinstance(exc, (psycopg.OperationalError, pg_errors.SerializationFailure,
                        pg_errors.DeadlockDetected, pg_errors.LockNotAvailable)):
        return TransientError(message)
    return PermanentError(message)
