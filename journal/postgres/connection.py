"""A psycopg connection that speaks like `sqlite3.Connection` to the journal's shared SQL.

The projections, rules and queries are written once with `?` placeholders (journal/sql.py);
this turns them into psycopg's `%s` (a literal `%` doubled first), once per statement text.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import psycopg


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PgSql:
    """The journal's view of one psycopg connection (see journal/sql.py)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        return self.conn.execute(translate(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(translate(sql), rows)
