"""What the journal's SQL runs on: a connection with `execute`, whichever backend.

Projections, rules, queries and verify are written once, in the SQL both SQLite and
PostgreSQL accept (`?` placeholders, `INSERT … ON CONFLICT`, no `INSERT OR …`); a
`sqlite3.Connection` is one such connection as it is, and the Postgres backend wraps its
psycopg connection to look the same (journal/postgres/connection.py). The few statements the
two dialects cannot share ask `dialect(conn)` which one they talk to.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Sql(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...


Dialect = Literal["sqlite", "postgres"]


def dialect(conn: Sql) -> Dialect:
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgres"


# LIMIT with no limit, in both dialects (SQLite's -1 is an error in Postgres).
NO_LIMIT = 2**62
