"""The SQLite journal: the shared contract, plus what only SQLite can promise."""
from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

from journal import JournalError, SqliteJournal, UnsupportedURL, open_journal
from journal.events import encode


def _load_contract() -> ModuleType:
    # tests/ is not a package (a tests/journal/__init__.py would shadow the real `journal`
    # package), so the contract is loaded under a name no other test folder can clash with.
    name = "journal_contract_suite"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("contract.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


contract = _load_contract()
JournalContract: Any = contract.JournalContract  # loaded at run time, so typed loosely


@contextmanager
def unguarded(journal: SqliteJournal) -> Iterator[sqlite3.Connection]:
    """A raw connection with the append-only triggers dropped, restored on the way out."""
    conn = sqlite3.connect(journal.path, isolation_level=None)
    try:
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
        ).fetchall()
        assert triggers, "the journal has no append-only triggers"
        conn.execute("BEGIN IMMEDIATE")
        for name, _ in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        yield conn
        for _, sql in triggers:
            conn.execute(sql)
        conn.execute("COMMIT")
    finally:
        conn.close()


class TestSqliteJournal(JournalContract):
    def make_journal(self, tmp_path: Path) -> SqliteJournal:
        return open_journal(f"sqlite:///{tmp_path}/journal/journal.db")

    def edit_event_body(self, journal: SqliteJournal, seq: int, body: bytes) -> None:
        with unguarded(journal) as conn:
            assert conn.execute("UPDATE events SET body = ? WHERE seq = ?", (body, seq)).rowcount == 1

    def delete_event(self, journal: SqliteJournal, seq: int) -> None:
        with unguarded(journal) as conn:
            assert conn.execute("DELETE FROM events WHERE seq = ?", (seq,)).rowcount == 1

    def swap_events(self, journal: SqliteJournal, seq_a: int, seq_b: int) -> None:
        columns = "at, run, type, body, hash"
        with unguarded(journal) as conn:
            a, b = (conn.execute(f"SELECT {columns} FROM events WHERE seq = ?", (seq,)).fetchone()
                    for seq in (seq_a, seq_b))
            for seq, row in ((seq_a, b), (seq_b, a)):
                conn.execute("UPDATE events SET at = ?, run = ?, type = ?, body = ?, hash = ? WHERE seq = ?",
                             (*row, seq))


# -- what only SQLite promises ------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[SqliteJournal]:
    with open_journal(tmp_path / "journal.db") as journal:
        journal.append(contract.realistic(contract.Story()))
        yield journal


@pytest.mark.parametrize("statement", ["UPDATE events SET run = 'x' WHERE seq = 2", "DELETE FROM events WHERE seq = 2"])
def test_storage_refuses_to_change_events(filled, statement):
    raw = sqlite3.connect(filled.path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute(statement)
    finally:
        raw.close()
    assert filled.verify().ok


def test_update_is_refused_as_an_integrity_error(filled):
    raw = sqlite3.connect(filled.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="journal events are append-only"):
            raw.execute("UPDATE events SET body = x'00'")
    finally:
        raw.close()


def test_connection_is_durable_wal(filled):
    # White-box: synchronous is per connection, so only the journal's own one can tell.
    conn = filled._conn
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_history_lookup_uses_the_record_index(filled):
    raw = sqlite3.connect(filled.path)
    plan = raw.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM record_index WHERE key = ? AND entity = ?", ("v1", "videos")
    ).fetchall()
    raw.close()
    assert any("USING INDEX" in row[-1] and "key=?" in row[-1] for row in plan), plan


@pytest.mark.parametrize("url", [
    "sqlite:///nested/dir/j.db",  # relative to the working directory
    "nested/dir/j.db",
])
def test_open_journal_relative_urls_and_paths(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with open_journal(url) as journal:
        assert journal.path.resolve() == tmp_path / "nested" / "dir" / "j.db"
    assert (tmp_path / "nested" / "dir" / "j.db").is_file()


def test_open_journal_absolute_url_and_pathlike(tmp_path):
    absolute = tmp_path / "a" / "j.db"
    with open_journal(f"sqlite:///{absolute}") as journal:  # sqlite:////abs...
        assert journal.path == absolute
    with open_journal(absolute) as journal:
        assert journal.path == absolute
    assert absolute.is_file()


@pytest.mark.parametrize("url", ["postgresql://localhost/journal", "sqlite://host/j.db", "sqlite:///"])
def test_open_journal_refuses_other_urls(url):
    with pytest.raises(UnsupportedURL):
        open_journal(url)
    assert issubclass(UnsupportedURL, JournalError)


def test_verify_sees_a_hash_rewritten_to_hide_an_edit(filled):
    # Re-hashing the edited event itself moves the break to the next event, never hides it.
    target = [r for r in filled.read(run=contract.RUN_A) if r.type == "EntryPlanned"][1]
    previous = bytes.fromhex(next(filled.read(after=target.seq - 2)).hash)
    forged = encode(msgspec.structs.replace(target.event, keys=["v1", "v2", "evil"]))
    with unguarded(filled) as conn:
        conn.execute("UPDATE events SET body = ?, hash = ? WHERE seq = ?",
                     (forged, hashlib.sha256(previous + forged).hexdigest(), target.seq))
    report = filled.verify()
    assert not report.ok
    assert not contract.names_seq(report.problems, target.seq)
    assert contract.names_seq(report.problems, target.seq + 1)
    assert any(p.startswith("projection record_index differs") for p in report.problems)


def test_verify_sees_columns_that_disagree_with_the_body(filled):
    with unguarded(filled) as conn:
        conn.execute("UPDATE events SET run = 'someone-else' WHERE seq = 5")
    report = filled.verify()
    assert report.problems == ["seq 5: column run is 'someone-else' but the body says "
                               f"'{contract.RUN_A}'"]
