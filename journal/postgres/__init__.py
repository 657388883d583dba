"""The Postgres journal (issue 15, DESIGN §8.5): the SQLite journal's contract on a database
that processes on several machines share, plus what sharing needs: entry leases
(journal/postgres/leases.py) and advisory locks (journal/postgres/locks.py).

Imports psycopg: loaded only when a `postgresql://` journal is opened.
"""
from __future__ import annotations

from .journal import PostgresJournal

__all__ = ["PostgresJournal"]
