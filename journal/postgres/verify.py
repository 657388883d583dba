"""verify on Postgres: the same walk and comparison as journal/verify.py, in one
REPEATABLE READ transaction of a private connection. The projections are rebuilt into
temporary tables of the same names, which Postgres looks up before the journal's own schema,
so the shared projection SQL fills them unchanged; the transaction's end drops them."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ..rows import VerifyReport
from ..schema import PROJECTIONS
from ..verify import Heads, Walk, compare, head_problems
from . import index
from .connection import PgSql

FETCH = 256  # events per round trip of the walk's server-side cursor


def verify(conn: psycopg.Connection[Any], schema: str, heads: Heads) -> VerifyReport:
    """On `conn`, which this leaves as it found it (the transaction is rolled back)."""
    db = PgSql(conn)
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for table in PROJECTIONS:
            db.execute(f"CREATE TEMP TABLE {table} (LIKE {_q(schema)}.{table} INCLUDING ALL) ON COMMIT DROP")
        walk = Walk(db, (psycopg.Error,), lambda: _savepoint(conn))
        with conn.cursor(name="journal_verify_walk") as events:
            events.itersize = FETCH
            events.execute("SELECT seq, at, run, type, body, hash FROM events ORDER BY seq")
            for row in events:
                walk.step(*row)
        # The live index is built lazily: rebuilt here up to the seq it says it covers.
        index.build(db, index.tracked(db, f"{_q(schema)}.tracking"))
        problems = (walk.problems + head_problems(db, heads, f"{_q(schema)}.events")
                    + compare(db, _q(schema), "pg_temp"))
    return VerifyReport(ok=not problems, events=walk.count, problems=problems)


@contextmanager
def _savepoint(conn: psycopg.Connection[Any]) -> Iterator[None]:
    with conn.transaction():
        yield


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
