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

from journal import JournalError, JournalIntegrityError, SqliteJournal, UnsupportedURL, open_journal
from journal import Head, index, queries
from journal.events import encode
from journal.head import HeadFile
from journal.index import khash


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
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


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


@pytest.mark.parametrize("entity", [None, "videos"])
def test_history_lookup_probes_the_record_index(filled, entity):
    # One probe of the compact index by key hash, then its entries by planned seq.
    sql, params = queries.HISTORY_SELECT, [khash("v1")]
    if entity is not None:
        sql, params = sql + " AND e.entity = ?", [*params, entity]
    raw = sqlite3.connect(filled.path)
    plan = [row[-1] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
    raw.close()
    assert any(step.startswith("SEARCH ri USING PRIMARY KEY (khash=?)") for step in plan), plan
    assert any("entries_planned_seq (planned_seq=?)" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


def test_record_index_is_compact_and_filled_lazily(filled):
    def rows() -> list[tuple[Any, ...]]:
        raw = sqlite3.connect(filled.path)
        try:
            return raw.execute("SELECT khash, entry_id FROM record_index ORDER BY khash, entry_id").fetchall()
        finally:
            raw.close()

    assert rows() == []  # appends never touch it
    filled.history("nothing")
    planned = {r.seq: r.event for r in filled.read() if r.type == "EntryPlanned"}
    assert rows() == sorted({(khash(key), seq) for seq, event in planned.items() for key in event.keys})
    assert filled.projection_snapshot()["tracking"] == [("record_index", filled.last_seq())]


def test_khash_is_signed_blake2b_64():
    digest = hashlib.blake2b(b"v1", digest_size=8).digest()
    assert khash("v1") == int.from_bytes(digest, "big", signed=True)
    assert -(2**63) <= khash("\u00e9\U0001f600") < 2**63


def test_a_hash_collision_within_an_entry_and_across_entries(journal_path, monkeypatch):
    # Force every key onto one hash: rows collapse to one per entry (INSERT OR IGNORE),
    # history still tells the keys apart by reading the entries.
    monkeypatch.setattr(index, "_from_bytes", lambda *args, **kwargs: 7)
    story = contract.Story()
    with open_journal(journal_path) as journal:
        journal.append(story.plan(contract.RUN_A, [("videos", ["a", "b", "a"]), ("videos", ["c"])]))
        assert [(r.entry, r.key, r.hash) for r in journal.history("a")] == [
            (1, "a", journal.planned(contract.RUN_A, 1).hashes[0]),
            (1, "a", journal.planned(contract.RUN_A, 1).hashes[2]),
        ]
        assert [(r.entry, r.key) for r in journal.history("c")] == [(2, "c")]
        assert journal.history("zzz") == []
        assert journal.projection_snapshot()["record_index"] == [(7, 2), (7, 3)]
        assert journal.verify().ok


def test_an_old_layout_journal_gets_its_projections_rebuilt(journal_path):
    with open_journal(journal_path) as journal:
        journal.append(contract.realistic(contract.Story()))
        live = journal.projection_snapshot()
    raw = sqlite3.connect(journal_path, isolation_level=None)
    raw.execute("DROP TABLE record_index")
    raw.execute("DROP TABLE tracking")
    raw.execute("CREATE TABLE record_index (entity TEXT, key TEXT, run TEXT, entry INTEGER, pos INTEGER,"
                " hash TEXT, PRIMARY KEY (run, entry, pos))")
    raw.execute("DELETE FROM meta WHERE key = 'projections_version'")
    raw.close()
    with open_journal(journal_path) as journal:
        assert journal.projection_snapshot() == live
        assert [r.outcome for r in journal.history("v1")] == ["skipped", "skipped"]
        assert journal.verify().ok


@pytest.mark.parametrize("url", [
    "sqlite:///nested/dir/j.db",  # relative to the working directory
    "nested/dir/j.db",
])
def test_open_journal_relative_urls_and_paths(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with open_journal(url) as journal:
        assert journal.path.resolve() == tmp_path / "nested" / "dir" / "j.db"
        assert not journal.path.exists()  # created by its first use, not by opening
        journal.last_seq()
    assert (tmp_path / "nested" / "dir" / "j.db").is_file()


def test_open_journal_absolute_url_and_pathlike(tmp_path):
    absolute = tmp_path / "a" / "j.db"
    with open_journal(f"sqlite:///{absolute}") as journal:  # sqlite:////abs...
        assert journal.path == absolute
    with open_journal(absolute) as journal:
        assert journal.path == absolute
        journal.last_seq()
    assert absolute.is_file()


@pytest.mark.parametrize("url", ["postgresql://localhost/journal", "sqlite://host/j.db", "sqlite:///"])
def test_open_journal_refuses_other_urls(url):
    with pytest.raises(UnsupportedURL):
        open_journal(url)
    assert issubclass(UnsupportedURL, JournalError)


def test_verify_sees_a_hash_rewritten_to_hide_an_edit(filled):
    # Re-hashing the edited event itself moves the break to the next event, never hides it.
    filled.history("v1")  # the record index catches up on the original bodies
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


def test_an_edit_before_the_index_catches_up_still_breaks_the_chain(filled):
    # The lazy index then agrees with the forged body; the chain is what catches the edit.
    target = [r for r in filled.read(run=contract.RUN_A) if r.type == "EntryPlanned"][1]
    forged = encode(msgspec.structs.replace(target.event, keys=["v1", "v2", "evil"]))
    with unguarded(filled) as conn:
        conn.execute("UPDATE events SET body = ? WHERE seq = ?", (forged, target.seq))
    report = filled.verify()
    assert not report.ok and contract.names_seq(report.problems, target.seq)
    assert [r.key for r in filled.history("evil")] == ["evil"]


def test_an_undecodable_planned_body_is_reported_not_indexed(filled):
    with unguarded(filled) as conn:
        conn.execute("UPDATE events SET body = x'c1' WHERE seq = 4")
    report = filled.verify()  # does not raise: the catch-up stops before seq 4
    assert not report.ok and contract.names_seq(report.problems, 4)
    assert not any(p.startswith(("projection record_index", "projection tracking")) for p in report.problems)
    with pytest.raises(JournalIntegrityError, match="seq 4"):
        filled.history("v4")


def test_verify_sees_columns_that_disagree_with_the_body(filled):
    with unguarded(filled) as conn:
        conn.execute("UPDATE events SET run = 'someone-else' WHERE seq = 5")
    report = filled.verify()
    assert report.problems == ["seq 5: column run is 'someone-else' but the body says "
                               f"'{contract.RUN_A}'"]


def test_catch_up_in_small_chunks_gives_the_same_index(journal_path, monkeypatch):
    story = contract.Story()
    with open_journal(journal_path) as journal:
        journal.append(contract.realistic(story))
        journal.append(story.plan("big", [("videos", [f"b{n}-{i}" for i in range(5)]) for n in range(30)]))
        monkeypatch.setattr(index, "CHUNK_ROWS", 7)  # many transactions, each advancing the tracker
        assert [(r.run, r.entry) for r in journal.history("b17-3")] == [("big", 18)]
        live = journal.projection_snapshot()
        assert live["tracking"] == [("record_index", journal.last_seq())]
        monkeypatch.setattr(index, "CHUNK_ROWS", 250_000)
        journal.rebuild_projections()
        assert journal.projection_snapshot() == live
        assert journal.verify().ok


# -- the head file ------------------------------------------------------------------------------


def test_the_head_file_follows_each_durable_append(filled):
    story = contract.Story()
    head_file = filled.path.with_name("journal.db-head")
    assert head_file.read_text() == f"{filled.head()}\n"
    durable_head = filled.head()
    filled.append([story.start("later")], durable=False)
    assert head_file.read_text() == f"{durable_head}\n"  # covered by the next durable append
    filled.append([story.start("later still")])
    assert head_file.read_text() == f"{filled.head()}\n" != f"{durable_head}\n"


def test_a_missing_head_file_is_a_problem(filled):
    filled.path.with_name("journal.db-head").unlink()
    assert filled.verify().problems == [
        "the head file is missing: cannot tell whether events were cut off the end"]


def test_the_head_file_never_moves_back(filled):
    HeadFile(filled.path).advance(Head(1, "0" * 64))  # a slower process, late
    assert filled.verify().ok


def test_a_new_journal_replaces_the_head_file_of_a_deleted_one(tmp_path):
    path = tmp_path / "journal.db"
    with open_journal(path) as journal:
        journal.append(contract.realistic(contract.Story()))
    path.unlink()
    with open_journal(path) as journal:
        journal.append(contract.realistic(contract.Story())[:3])
        assert journal.verify().ok


def test_a_journal_from_before_head_files_adopts_one(filled):
    head = filled.path.with_name("journal.db-head")
    filled.close()
    head.unlink()
    with unguarded(filled) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'head_file'")
    with open_journal(filled.path) as journal:
        assert journal.verify().ok
        assert head.read_text() == f"{journal.head()}\n"
