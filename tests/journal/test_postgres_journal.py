"""The Postgres journal: the shared contract unchanged, plus what only a shared database
promises (appends from several processes in one chain, events refused change by trigger).

Each test gets its own schema in the database `syncd_journal_tests` on the local server,
dropped afterwards.
"""
from __future__ import annotations

import hashlib
import importlib.util
import multiprocessing
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from journal import JournalStorageError
from journal.postgres import PostgresJournal

DATABASE = "syncd_journal_tests"
SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _load_contract() -> ModuleType:
    name = "journal_contract_suite"  # the same module test_sqlite_journal.py loads
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("contract.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


contract = _load_contract()
JournalContract: Any = contract.JournalContract


def ensure_database() -> None:
    with psycopg.connect(**SERVER, dbname="postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            try:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            except psycopg.errors.DuplicateDatabase:
                pass  # another test process made it just now


def schema_for(tmp_path: Path) -> str:
    return "j_" + hashlib.blake2b(str(tmp_path).encode(), digest_size=8).hexdigest()


OPENED: set[str] = set()  # schemas this test process made, dropped after each test


def open_pg_journal(tmp_path: Path) -> PostgresJournal:
    ensure_database()
    OPENED.add(schema_for(tmp_path))
    return PostgresJournal({**SERVER, "dbname": DATABASE}, schema_for(tmp_path), f"test {DATABASE}",
                           tmp_path)


@contextmanager
def raw(journal: PostgresJournal) -> Iterator[psycopg.Connection[Any]]:
    conn = journal.connect()
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def unguarded(journal: PostgresJournal) -> Iterator[psycopg.Connection[Any]]:
    """A raw connection with the append-only triggers off, restored on the way out."""
    with raw(journal) as conn, conn.transaction():
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        yield conn
        conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


@pytest.fixture(autouse=True)
def drop_schemas() -> Iterator[None]:
    yield
    if not OPENED:
        return
    with psycopg.connect(**SERVER, dbname=DATABASE, autocommit=True) as conn:
        while OPENED:
            conn.execute(f"DROP SCHEMA IF EXISTS {OPENED.pop()} CASCADE")


class TestPostgresJournal(JournalContract):
    def make_journal(self, tmp_path: Path) -> PostgresJournal:
        return open_pg_journal(tmp_path)

    def edit_event_body(self, journal: PostgresJournal, seq: int, body: bytes) -> None:
        with unguarded(journal) as conn:
            assert conn.execute("UPDATE events SET body = %s WHERE seq = %s", (body, seq)).rowcount == 1

    def delete_event(self, journal: PostgresJournal, seq: int) -> None:
        with unguarded(journal) as conn:
            assert conn.execute("DELETE FROM events WHERE seq = %s", (seq,)).rowcount == 1

    def swap_events(self, journal: PostgresJournal, seq_a: int, seq_b: int) -> None:
        columns = "at, run, type, body, hash"
        with unguarded(journal) as conn:
            a, b = (conn.execute(f"SELECT {columns} FROM events WHERE seq = %s", (seq,)).fetchone()
                    for seq in (seq_a, seq_b))
            for seq, row in ((seq_a, b), (seq_b, a)):
                conn.execute("UPDATE events SET at = %s, run = %s, type = %s, body = %s, hash = %s"
                             " WHERE seq = %s", (*row, seq))


# -- what only a shared database promises --------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[PostgresJournal]:
    with open_pg_journal(tmp_path) as journal:
        journal.append(contract.realistic(contract.Story()))
        yield journal


@pytest.mark.parametrize("statement", ["UPDATE events SET run = 'x' WHERE seq = 2",
                                       "DELETE FROM events WHERE seq = 2", "TRUNCATE events"])
def test_the_database_refuses_to_change_events(filled, statement):
    with raw(filled) as conn, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute(statement)
    assert filled.verify().ok


def _append_runs(tmp_path: Path, writer: int, runs: int) -> None:
    story = contract.Story()
    with open_pg_journal(tmp_path) as journal:
        for n in range(runs):
            run = f"w{writer}-{n}"
            journal.append([story.start(run), story.entry(run, 1, "videos", [f"{run}-a"])])
            journal.append([story.seal(run, 1)])


def test_appends_from_several_processes_make_one_chain(tmp_path):
    open_pg_journal(tmp_path).close()  # created once, before the writers race
    writers = [multiprocessing.get_context("spawn").Process(target=_append_runs, args=(tmp_path, w, 15))
               for w in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    with open_pg_journal(tmp_path) as journal:
        assert [r.seq for r in journal.read()] == list(range(1, 3 * 15 * 3 + 1))
        assert len(journal.runs(statuses=["planned"])) == 45
        report = journal.verify()
        assert report.ok, report.problems


def test_an_unreachable_database_is_one_clear_error(tmp_path):
    with pytest.raises(JournalStorageError, match=r"journal nowhere: .*") as caught:
        PostgresJournal({"host": "127.0.0.1", "port": 1, "dbname": "x", "connect_timeout": 2},
                        "syncd_journal", "nowhere", tmp_path)
    assert "\n" not in str(caught.value)
