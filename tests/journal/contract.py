"""The journal contract: what every journal backend must do, whatever stores the events.

A backend's test module subclasses JournalContract and supplies the hooks:

    make_journal(tmp_path)               open the journal kept under tmp_path; called again with
                                         the same tmp_path it reopens the same journal
    edit_event_body(journal, seq, body)  overwrite one stored body, bypassing append-only guards
    delete_event(journal, seq)           remove one stored event, bypassing the guards
    swap_events(journal, seq_a, seq_b)   exchange two stored events (everything but their seq)

The tests use only the public API of `journal`, so a second backend runs them unchanged.
"""
from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from journal import (
    AmbiguousRun,
    AnyEvent,
    ApplyStarted,
    EntryApplied,
    EntryPlanned,
    Head,
    JournalError,
    MarkAdvanced,
    PlanSealed,
    Recorded,
    RunFinished,
    RunStarted,
    UnknownEntry,
    UnknownRun,
)
from journal.events import encode

RUN_A = "20261122-101500-a1b2"
RUN_B = "20261122-113000-c3d4"
COLUMNS = ["id", "name", "storage_meta"]


def payload(rows: list[list[Any]]) -> bytes:
    return zlib.compress(msgspec.msgpack.encode(rows))


def row_hash(row: list[Any]) -> str:
    return hashlib.blake2b(msgspec.msgpack.encode(row), digest_size=16).hexdigest()


class Story:
    """Builds realistic events, each one a microsecond-precision tick after the last."""

    def __init__(self) -> None:
        self.clock = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)

    def at(self) -> str:
        self.clock += timedelta(milliseconds=7)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def start(self, run: str, kind: str = "copy", source: str = "prod", target: str = "dev",
              **options: Any) -> RunStarted:
        return RunStarted(run=run, at=self.at(), kind=kind, source=source, target=target, options=options)

    def entry(self, run: str, entry: int, entity: str, keys: list[str], op: str = "create") -> EntryPlanned:
        rows = [[key, f"{entity} {key}", {"gcs": f"gs://co-prod-data/{key}.mp4"}] for key in keys]
        return EntryPlanned(
            run=run, at=self.at(), entry=entry, entity=entity, op=op, columns=COLUMNS,
            keys=keys, hashes=[row_hash(row) for row in rows], payload=payload(rows),
        )

    def seal(self, run: str, entries: int, **summary: Any) -> PlanSealed:
        return PlanSealed(run=run, at=self.at(), entries=entries, summary=summary)

    def plan(self, run: str, batches: list[tuple[str, list[str]]], **start: Any) -> list[AnyEvent]:
        """RunStarted, one EntryPlanned per (entity, keys) batch, PlanSealed."""
        entries = [self.entry(run, n, entity, keys) for n, (entity, keys) in enumerate(batches, 1)]
        return [self.start(run, **start), *entries, self.seal(run, len(entries))]

    def apply_started(self, run: str, attempt: int = 1) -> ApplyStarted:
        return ApplyStarted(run=run, at=self.at(), attempt=attempt)

    def applied(self, run: str, entry: int, outcomes: list[str], error: str | None = None,
                retries: int = 0) -> EntryApplied:
        state = "failed" if "failed" in outcomes else "done"
        return EntryApplied(run=run, at=self.at(), entry=entry, state=state, outcomes=outcomes,
                            error=error, retries=retries)

    def finished(self, run: str, status: str, error: str | None = None) -> RunFinished:
        return RunFinished(run=run, at=self.at(), status=status, error=error)

    def mark(self, run: str, name: str, value: Any, key: Any, column: str = "created_at") -> MarkAdvanced:
        return MarkAdvanced(run=run, at=self.at(), name=name, column=column, value=value, key=key)


def realistic(story: Story) -> list[AnyEvent]:
    """Two runs: A fails on entry 2, is resumed and completes; B is interrupted mid-apply.

    Key v1 is in both runs, so its history has two rows.
    """
    s = story
    return [
        *s.plan(RUN_A, [("devices", ["d1", "d2"]), ("videos", ["v1", "v2", "v3"]), ("videos", ["v4"])],
                limit=10),
        s.apply_started(RUN_A),
        s.applied(RUN_A, 1, ["created", "skipped"]),
        s.applied(RUN_A, 2, ["created", "failed", "failed"], error="disk I/O error"),
        s.finished(RUN_A, "failed", error="1 entry failed"),
        s.apply_started(RUN_A, attempt=2),
        s.applied(RUN_A, 2, ["skipped", "created", "created"], retries=1),
        s.applied(RUN_A, 3, ["created"]),
        s.finished(RUN_A, "completed"),
        *s.plan(RUN_B, [("videos", ["v1", "v5"]), ("video_steps", ["s1", "s2"])], kind="transfer",
                target="staging"),
        s.apply_started(RUN_B),
        s.applied(RUN_B, 1, ["skipped", "created"]),
        s.finished(RUN_B, "interrupted", error="SIGTERM"),
    ]


def names_seq(problems: list[str], seq: int) -> bool:
    return any(re.search(rf"\bseq {seq}\b", problem) for problem in problems)


class JournalContract:
    # -- hooks a backend supplies ------------------------------------------------------------

    def make_journal(self, tmp_path: Path) -> Any:
        raise NotImplementedError

    def edit_event_body(self, journal: Any, seq: int, body: bytes) -> None:
        raise NotImplementedError

    def delete_event(self, journal: Any, seq: int) -> None:
        raise NotImplementedError

    def swap_events(self, journal: Any, seq_a: int, seq_b: int) -> None:
        raise NotImplementedError

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture
    def journal(self, tmp_path: Path) -> Iterator[Any]:
        journal = self.make_journal(tmp_path)
        yield journal
        journal.close()

    @pytest.fixture
    def story(self) -> Story:
        return Story()

    @pytest.fixture
    def filled(self, journal: Any, story: Story) -> Any:
        journal.append(realistic(story))
        return journal

    # -- append and read ---------------------------------------------------------------------

    def test_append_returns_last_seq_and_read_gives_events_back_in_order(self, journal, story):
        events = realistic(story)
        assert journal.append(events) == len(events)
        recorded = list(journal.read())
        assert [r.event for r in recorded] == events
        assert [r.seq for r in recorded] == list(range(1, len(events) + 1))
        assert [(r.at, r.run, r.type) for r in recorded] == [
            (e.at, e.run, type(e).__name__) for e in events
        ]
        assert len({r.hash for r in recorded}) == len(events)
        assert all(re.fullmatch(r"[0-9a-f]{64}", r.hash) for r in recorded)
        assert journal.last_seq() == len(events)

    def test_append_of_nothing_stores_nothing(self, filled):
        before = filled.last_seq()
        assert filled.append([]) == before
        assert filled.last_seq() == before

    def test_seq_continues_across_batches(self, journal, story):
        assert journal.last_seq() == 0
        assert journal.append(story.plan(RUN_A, [("videos", ["v1"])])) == 3
        assert journal.append([story.apply_started(RUN_A)]) == 4
        assert [r.seq for r in journal.read()] == [1, 2, 3, 4]

    def test_read_after_and_by_run(self, filled):
        everything = list(filled.read())
        assert list(filled.read(after=5)) == everything[5:]
        assert list(filled.read(after=filled.last_seq())) == []
        only_b = list(filled.read(run=RUN_B))
        assert only_b == [r for r in everything if r.run == RUN_B]
        assert {type(r.event) for r in only_b} >= {RunStarted, EntryPlanned, RunFinished}
        b_after = list(filled.read(after=only_b[1].seq, run=RUN_B))
        assert b_after == only_b[2:]

    def test_read_streams_through_a_long_log(self, journal, story):
        keys = [f"k{n}" for n in range(700)]
        journal.append(story.plan(RUN_A, [("videos", [key]) for key in keys]))
        seqs = [r.seq for r in journal.read()]
        assert seqs == list(range(1, 703))
        assert [r.event.keys for r in journal.read(run=RUN_A) if isinstance(r.event, EntryPlanned)] == [
            [key] for key in keys
        ]

    def test_reopened_journal_keeps_its_events_and_extends_the_chain(self, tmp_path, story):
        first = self.make_journal(tmp_path)
        first.append(story.plan(RUN_A, [("videos", ["v1", "v2"])]))
        first.close()
        with self.make_journal(tmp_path) as again:
            assert again.last_seq() == 3
            assert again.run(RUN_A).status == "planned"
            assert again.append([story.apply_started(RUN_A)]) == 4
            assert again.verify().ok

    # -- runs --------------------------------------------------------------------------------

    def test_run_status_follows_the_lifecycle(self, journal, story):
        def status() -> tuple[str, int]:
            row = journal.run(RUN_A)
            return row.status, row.attempts

        journal.append([story.start(RUN_A), story.entry(RUN_A, 1, "videos", ["v1", "v2"])])
        assert status() == ("planning", 0)
        assert journal.run(RUN_A).sealed_at is None
        journal.append([seal := story.seal(RUN_A, 1, videos={"create": 2})])
        assert status() == ("planned", 0)
        assert journal.run(RUN_A).sealed_at == seal.at
        journal.append([story.apply_started(RUN_A)])
        assert status() == ("applying", 1)
        journal.append([story.applied(RUN_A, 1, ["created", "failed"]), story.finished(RUN_A, "failed", "boom")])
        assert status() == ("failed", 1)
        assert journal.run(RUN_A).error == "boom"
        journal.append([story.apply_started(RUN_A, attempt=2)])
        assert status() == ("applying", 2)
        assert journal.run(RUN_A).finished_at is None
        journal.append([story.applied(RUN_A, 1, ["skipped", "created"]), done := story.finished(RUN_A, "completed")])
        assert status() == ("completed", 2)
        assert journal.run(RUN_A).finished_at == done.at

    def test_run_row_describes_the_run(self, filled):
        a = filled.run(RUN_A)
        assert (a.run, a.kind, a.source, a.target) == (RUN_A, "copy", "prod", "dev")
        assert a.options == {"limit": 10}
        assert a.entries == 3
        assert a.started_at < a.sealed_at < a.finished_at
        b = filled.run(RUN_B)
        assert (b.kind, b.target, b.status, b.attempts, b.entries) == ("transfer", "staging", "interrupted", 1, 2)

    def test_run_counts_total_the_latest_outcomes(self, filled):
        # Entry 2 failed twice then was retried: only the retry's outcomes count.
        assert filled.run(RUN_A).counts == {"created": 4, "skipped": 2, "updated": 0, "failed": 0, "deleted": 0}
        assert filled.run(RUN_B).counts == {"created": 1, "skipped": 1, "updated": 0, "failed": 0, "deleted": 0}

    def test_runs_are_listed_newest_first(self, filled):
        assert [row.run for row in filled.runs()] == [RUN_B, RUN_A]
        assert filled.runs()[1] == filled.run(RUN_A)

    def test_unknown_run_is_none(self, filled):
        assert filled.run("nope") is None

    def test_plan_summary_is_kept(self, journal, story):
        summary = {"entities": {"videos": {"selected": 2, "create": 2}}, "files": {"copy": 0}}
        journal.append([story.start(RUN_A), story.entry(RUN_A, 1, "videos", ["v1", "v2"]),
                        PlanSealed(run=RUN_A, at=story.at(), entries=1, summary=summary)])
        assert journal.run(RUN_A).summary == summary

    # -- entries -------------------------------------------------------------------------------

    def test_entries_are_pending_until_applied(self, journal, story):
        journal.append(story.plan(RUN_A, [("devices", ["d1"]), ("videos", ["v1", "v2"])]))
        rows = list(journal.entries(RUN_A))
        assert [(r.entry, r.entity, r.op, r.records, r.state) for r in rows] == [
            (1, "devices", "create", 1, "pending"), (2, "videos", "create", 2, "pending"),
        ]
        assert all(r.applied_at is None and r.created == 0 for r in rows)

    def test_entries_take_their_latest_outcome(self, filled):
        e2 = [r for r in filled.entries(RUN_A) if r.entry == 2][0]
        assert (e2.state, e2.error, e2.retries) == ("done", None, 1)
        assert (e2.created, e2.skipped, e2.updated, e2.failed) == (2, 1, 0, 0)
        assert e2.applied_at == filled.applied(RUN_A, 2).at

    def test_failed_entry_shows_its_error_before_the_retry(self, journal, story):
        journal.append([*story.plan(RUN_A, [("videos", ["v1", "v2"])]), story.apply_started(RUN_A),
                        story.applied(RUN_A, 1, ["created", "failed"], error="locked")])
        (row,) = journal.entries(RUN_A)
        assert (row.state, row.error, row.created, row.failed) == ("failed", "locked", 1, 1)

    def test_entries_filtered_by_state_in_entry_order(self, filled):
        assert [r.entry for r in filled.entries(RUN_B, states=["pending"])] == [2]
        assert [r.entry for r in filled.entries(RUN_B, states=["done"])] == [1]
        assert [r.entry for r in filled.entries(RUN_B, states=["pending", "done"])] == [1, 2]
        assert [r.entry for r in filled.entries(RUN_A, states=("failed",))] == []
        assert [r.entry for r in filled.entries(RUN_A)] == [1, 2, 3]
        assert list(filled.entries("nope")) == []

    def test_planned_returns_the_stored_event(self, filled, story):
        expected = [r.event for r in filled.read(run=RUN_A) if isinstance(r.event, EntryPlanned)][1]
        got = filled.planned(RUN_A, 2)
        assert got == expected
        assert msgspec.msgpack.decode(zlib.decompress(got.payload))[0][0] == "v1"

    def test_applied_returns_the_latest_outcome_or_none(self, filled):
        assert filled.applied(RUN_A, 2).outcomes == ["skipped", "created", "created"]
        assert filled.applied(RUN_B, 2) is None

    def test_planned_and_applied_of_an_unplanned_entry_raise(self, filled):
        with pytest.raises(UnknownEntry):
            filled.planned(RUN_A, 9)
        with pytest.raises(JournalError):
            filled.applied("nope", 1)

    def test_appending_while_iterating_entries_does_not_block(self, journal, story):
        # The applier's loop: walk the pending entries and record each outcome as it goes.
        journal.append([*story.plan(RUN_A, [("videos", [f"v{n}"]) for n in range(600)]),
                        story.apply_started(RUN_A)])

        def apply_all() -> None:
            for row in journal.entries(RUN_A, states=["pending"]):
                journal.append([story.applied(RUN_A, row.entry, ["created"])])

        worker = threading.Thread(target=apply_all, daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "appending while iterating entries deadlocked"
        assert list(journal.entries(RUN_A, states=["pending"])) == []
        assert journal.run(RUN_A).counts["created"] == 600

    def test_appends_from_several_threads_keep_one_chain(self, journal, story):
        runs = [f"run-{n}" for n in range(4)]
        batches = {run: story.plan(run, [("videos", [f"{run}-{k}"]) for k in range(20)]) for run in runs}

        def append(run: str) -> None:
            journal.append(batches[run][:1])
            for event in batches[run][1:]:
                journal.append([event])

        threads = [threading.Thread(target=append, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert journal.last_seq() == 4 * 22
        assert {row.run: row.status for row in journal.runs()} == {run: "planned" for run in runs}
        assert journal.verify().ok

    # -- history -------------------------------------------------------------------------------

    def test_history_is_oldest_first_with_outcomes(self, filled):
        rows = filled.history("v1")
        assert [(r.run, r.entry, r.entity, r.op, r.outcome) for r in rows] == [
            (RUN_A, 2, "videos", "create", "skipped"),
            (RUN_B, 1, "videos", "create", "skipped"),
        ]
        assert [(r.kind, r.source, r.target) for r in rows] == [("copy", "prod", "dev"), ("transfer", "prod", "staging")]
        planned = filled.planned(RUN_A, 2)
        assert rows[0].hash == planned.hashes[0]
        assert rows[0].planned_at == planned.at
        assert rows[0].applied_at == filled.applied(RUN_A, 2).at

    def test_history_uses_the_outcome_at_the_records_position(self, filled):
        (v5,) = filled.history("v5")
        assert (v5.key, v5.outcome) == ("v5", "created")
        (d2,) = filled.history("d2")
        assert d2.outcome == "skipped"

    def test_history_of_an_unapplied_record_is_pending(self, filled):
        (s2,) = filled.history("s2")
        assert (s2.entity, s2.outcome, s2.applied_at) == ("video_steps", "pending", None)

    def test_history_filters_by_entity(self, journal, story):
        journal.append(story.plan(RUN_A, [("devices", ["42"]), ("collectors", ["42"])]))
        assert [r.entity for r in journal.history("42")] == ["devices", "collectors"]
        assert [r.entity for r in journal.history("42", entity="collectors")] == ["collectors"]
        assert journal.history("42", entity="videos") == []
        assert journal.history("43") == []

    def test_history_of_many_records_finds_the_right_rows(self, journal, story):
        keys = [f"{n:08d}" for n in range(50_000)]
        batches = [("videos", keys[i:i + 1000]) for i in range(0, len(keys), 1000)]
        journal.append(story.plan(RUN_A, batches))
        journal.append(story.plan(RUN_B, [("videos", ["00031337", "other"])]))
        rows = journal.history("00031337")
        assert [(r.run, r.entry) for r in rows] == [(RUN_A, 32), (RUN_B, 1)]
        assert rows[0].hash == journal.planned(RUN_A, 32).hashes[337]
        assert all(r.outcome == "pending" for r in rows)
        assert journal.run(RUN_A).entries == 50

    def test_history_after_many_appends_without_any_catch_up(self, journal, story):
        # Planned one entry per append, as the planner does; nothing reads in between.
        journal.append([story.start(RUN_A)])
        for n in range(1, 201):
            journal.append([story.entry(RUN_A, n, "videos", [f"k{n}-{i}" for i in range(25)])])
        journal.append([story.seal(RUN_A, 200)])
        for n, i in ((1, 0), (77, 13), (200, 24)):
            (row,) = journal.history(f"k{n}-{i}")
            assert (row.run, row.entry, row.key, row.outcome) == (RUN_A, n, f"k{n}-{i}", "pending")
            assert row.hash == journal.planned(RUN_A, n).hashes[i]
        assert journal.history("k201-0") == []

    def test_history_sees_what_was_appended_after_an_earlier_history(self, journal, story):
        journal.append(story.plan(RUN_A, [("videos", ["v1", "v2"])]))
        assert [r.run for r in journal.history("v1")] == [RUN_A]
        assert journal.history("v3") == []
        journal.append([*story.plan(RUN_B, [("videos", ["v3", "v1"])]), story.apply_started(RUN_B),
                        story.applied(RUN_B, 1, ["created", "updated"])])
        assert [(r.run, r.outcome) for r in journal.history("v1")] == [(RUN_A, "pending"), (RUN_B, "updated")]
        assert [(r.run, r.outcome) for r in journal.history("v3")] == [(RUN_B, "created")]
        # Outcomes recorded after the index caught up show at once.
        journal.append([story.apply_started(RUN_A), story.applied(RUN_A, 1, ["skipped", "created"])])
        assert [r.outcome for r in journal.history("v1")] == ["skipped", "updated"]

    def test_a_key_in_two_entries_of_one_run_and_in_another_run(self, journal, story):
        journal.append(story.plan(RUN_A, [("videos", ["x", "v1"]), ("devices", ["d1"]),
                                          ("videos", ["v2", "x", "x"])]))
        journal.append(story.plan(RUN_B, [("videos", ["x"])], kind="transfer"))
        journal.append([story.apply_started(RUN_A), story.applied(RUN_A, 3, ["created", "skipped", "failed"])])
        a1, a3 = journal.planned(RUN_A, 1), journal.planned(RUN_A, 3)
        rows = journal.history("x")
        assert [(r.run, r.entry, r.outcome, r.hash, r.kind) for r in rows] == [
            (RUN_A, 1, "pending", a1.hashes[0], "copy"),
            (RUN_A, 3, "skipped", a3.hashes[1], "copy"),  # every position of the key, in order
            (RUN_A, 3, "failed", a3.hashes[2], "copy"),
            (RUN_B, 1, "pending", journal.planned(RUN_B, 1).hashes[0], "transfer"),
        ]
        assert journal.history("x", entity="devices") == []
        assert [r.entry for r in journal.history("d1", entity="devices")] == [2]

    def test_rebuild_after_the_index_caught_up_equals_live(self, filled, story):
        assert [r.run for r in filled.history("v1")] == [RUN_A, RUN_B]
        # A cut-off plan restarted after the index caught up with it.
        filled.append([story.start("cut"), story.entry("cut", 1, "videos", ["v1", "old"])])
        assert [r.run for r in filled.history("old")] == ["cut"]
        filled.append(story.plan("cut", [("videos", ["new"])]))
        assert filled.history("old") == []
        assert [r.run for r in filled.history("v1")] == [RUN_A, RUN_B]
        live = filled.projection_snapshot()
        histories = {key: filled.history(key) for key in ("v1", "new", "old", "s2")}
        filled.rebuild_projections()
        assert filled.projection_snapshot() == live
        assert {key: filled.history(key) for key in histories} == histories
        assert filled.verify().ok

    def test_snapshots_agree_whenever_the_index_catches_up(self, tmp_path, story):
        events = [*realistic(story), story.start("cut"), story.entry("cut", 1, "videos", ["v1"]),
                  *story.plan("cut", [("videos", ["v9"])])]
        with self.make_journal(tmp_path / "eager") as eager:
            for event in events:
                eager.append([event])
                eager.history("v1")
            eager_snapshot = eager.projection_snapshot()
        with self.make_journal(tmp_path / "lazy") as lazy:
            lazy.append(events)
            assert lazy.projection_snapshot() == eager_snapshot
            assert lazy.verify().ok

    # -- resolve_run -----------------------------------------------------------------------------

    def test_resolve_run_by_id_or_unique_prefix(self, filled):
        assert filled.resolve_run(RUN_A) == RUN_A
        assert filled.resolve_run("20261122-10") == RUN_A
        assert filled.resolve_run("20261122-113") == RUN_B

    def test_resolve_run_refuses_an_ambiguous_prefix(self, filled):
        with pytest.raises(AmbiguousRun) as caught:
            filled.resolve_run("20261122")
        assert RUN_A in str(caught.value) and RUN_B in str(caught.value)
        assert isinstance(caught.value, UnknownRun)

    def test_resolve_run_refuses_an_unknown_id(self, filled):
        with pytest.raises(UnknownRun, match="nope"):
            filled.resolve_run("nope")
        with pytest.raises(UnknownRun):
            filled.resolve_run("")
        assert issubclass(UnknownRun, JournalError)

    def test_resolve_run_prefers_an_exact_id_that_prefixes_others(self, journal, story):
        journal.append([story.start("abc"), story.start("abcd"), story.start("abce")])
        assert journal.resolve_run("abc") == "abc"
        assert journal.resolve_run("abcd") == "abcd"

    # -- what append refuses ---------------------------------------------------------------------

    def test_starting_an_unsealed_run_again_plans_it_afresh(self, journal, story):
        journal.append([story.start(RUN_A), story.entry(RUN_A, 1, "videos", ["v1", "v2"]),
                        story.entry(RUN_A, 2, "devices", ["d1"])])
        journal.append(story.plan(RUN_A, [("videos", ["v3"])]))
        assert [(r.entry, r.entity, r.records) for r in journal.entries(RUN_A)] == [(1, "videos", 1)]
        assert journal.planned(RUN_A, 1).keys == ["v3"]
        assert journal.history("v1") == [] and journal.history("d1") == []
        assert [r.outcome for r in journal.history("v3")] == ["pending"]
        assert (journal.run(RUN_A).status, journal.run(RUN_A).entries) == ("planned", 1)
        # The cut-off plan's events stay in the log.
        assert [r.type for r in journal.read(run=RUN_A)].count("EntryPlanned") == 3

    def test_starting_a_sealed_run_again_is_refused(self, filled, story):
        before = filled.last_seq()
        with pytest.raises(JournalError, match=RUN_A):
            filled.append([story.start(RUN_A)])
        assert filled.last_seq() == before
        assert filled.run(RUN_A).status == "completed"

    @pytest.mark.parametrize("make", [
        lambda s: s.entry("ghost", 1, "videos", ["v1"]),
        lambda s: s.seal("ghost", 0),
        lambda s: s.apply_started("ghost"),
        lambda s: s.applied("ghost", 1, ["created"]),
        lambda s: s.finished("ghost", "completed"),
    ])
    def test_events_for_an_unknown_run_are_refused(self, filled, story, make):
        with pytest.raises(JournalError, match="ghost"):
            filled.append([make(story)])
        assert filled.run("ghost") is None

    def test_a_refused_batch_stores_nothing(self, filled, story):
        before, snapshot = filled.last_seq(), filled.projection_snapshot()
        batch = [story.start("new"), story.entry("new", 1, "videos", ["v9"]), story.apply_started("ghost")]
        with pytest.raises(JournalError):
            filled.append(batch)
        assert filled.last_seq() == before
        assert filled.projection_snapshot() == snapshot
        assert filled.run("new") is None and filled.history("v9") == []

    def test_lifecycle_mistakes_are_refused(self, journal, story):
        journal.append([story.start(RUN_A), story.entry(RUN_A, 1, "videos", ["v1", "v2"])])
        refused = [
            story.apply_started(RUN_A),  # an unsealed plan is never applied
            story.seal(RUN_A, 2),  # says 2 entries, 1 was planned
            story.entry(RUN_A, 1, "videos", ["v3"]),  # entry 1 again
            story.applied(RUN_A, 2, ["created"]),  # never planned
            story.applied(RUN_A, 1, ["created"]),  # 1 outcome for 2 records
        ]
        for event in refused:
            with pytest.raises(JournalError):
                journal.append([event])
        assert journal.last_seq() == 2
        journal.append([story.seal(RUN_A, 1)])
        with pytest.raises(JournalError):
            journal.append([story.entry(RUN_A, 2, "videos", ["v3"])])  # plan sealed

    # -- verify ----------------------------------------------------------------------------------

    def test_verify_passes_on_a_good_journal(self, filled):
        report = filled.verify()
        assert (report.ok, report.events, report.problems) == (True, filled.last_seq(), [])

    def test_verify_passes_on_an_empty_journal(self, journal):
        assert (journal.verify().ok, journal.verify().events) == (True, 0)

    def _seq_of(self, journal: Any, run: str, kind: type, nth: int = 0) -> Recorded:
        return [r for r in journal.read(run=run) if isinstance(r.event, kind)][nth]

    def test_verify_finds_an_edited_body(self, filled):
        target = self._seq_of(filled, RUN_A, EntryPlanned, 1)
        forged = msgspec.structs.replace(target.event, keys=["v1", "v2", "evil"])
        self.edit_event_body(filled, target.seq, encode(forged))
        report = filled.verify()
        assert not report.ok
        assert names_seq(report.problems, target.seq)
        assert not names_seq(report.problems, target.seq + 1)  # the chain resumes after it

    def test_verify_finds_a_body_that_does_not_decode(self, filled):
        self.edit_event_body(filled, 4, b"\xc1 not msgpack")
        report = filled.verify()
        assert not report.ok
        assert sum(names_seq([p], 4) for p in report.problems) >= 2  # bad hash and bad body

    def test_verify_finds_a_deleted_event(self, filled):
        self.delete_event(filled, 7)
        report = filled.verify()
        assert not report.ok
        assert names_seq(report.problems, 7)  # the gap
        assert names_seq(report.problems, 8)  # the chain breaks at the next event
        assert report.events == filled.last_seq() - 1

    def test_verify_finds_a_deleted_last_event(self, filled):
        # No later event links to it; the projections still say what it did.
        self.delete_event(filled, filled.last_seq())
        report = filled.verify()
        assert not report.ok
        assert any(problem.startswith("projection runs differs") for problem in report.problems)

    def test_verify_finds_events_cut_off_the_end_after_a_rebuild(self, filled):
        # The projections are rebuilt from what is left, so only the head kept outside the
        # events can tell: a chain alone cannot see its tail cut off.
        last = filled.last_seq()
        for seq in (last, last - 1, last - 2):
            self.delete_event(filled, seq)
        filled.rebuild_projections()
        report = filled.verify()
        assert not report.ok
        assert any(f"events end at seq {last - 3}" in p and f"says seq {last}" in p
                   and "cut off" in p for p in report.problems), report.problems

    def test_head_of_an_empty_journal_is_the_genesis(self, journal):
        assert str(journal.head()) == "0:" + "0" * 64

    def test_head_names_the_last_event(self, filled):
        last = list(filled.read())[-1]
        assert (filled.head().seq, filled.head().hash) == (last.seq, last.hash)

    def test_verify_checks_a_published_head(self, filled, story):
        published = filled.head()
        filled.append([story.start("later")])
        assert filled.verify(expect=published).ok  # the log grew past it: fine
        forged = Head(published.seq, "f" * 64)
        problems = filled.verify(expect=forged).problems
        assert problems == [f"seq {published.seq}: hash {published.hash} is not {'f' * 64},"
                            " which the expected head names"]
        ahead = Head(filled.last_seq() + 5, "a" * 64)
        assert any("cut off" in p for p in filled.verify(expect=ahead).problems)

    def test_verify_finds_swapped_events(self, filled):
        a = self._seq_of(filled, RUN_A, EntryApplied, 0).seq
        b = a + 1
        self.swap_events(filled, a, b)
        report = filled.verify()
        assert not report.ok
        assert names_seq(report.problems, a) and names_seq(report.problems, b)

    # -- projections ------------------------------------------------------------------------------

    def test_rebuilt_projections_equal_the_live_ones(self, filled, story):
        filled.append([story.start("unsealed"), story.entry("unsealed", 1, "files", ["gs://b/k1"], op="copy")])
        live = filled.projection_snapshot()
        assert set(live) >= {"runs", "entries"}
        assert len(live["runs"]) == 3
        filled.rebuild_projections()
        assert filled.projection_snapshot() == live
        assert filled.run(RUN_A).counts["created"] == 4
        assert [r.outcome for r in filled.history("v1")] == ["skipped", "skipped"]
        assert filled.verify().ok

    # -- marks and run queries ---------------------------------------------------------------------

    def test_a_mark_advances_with_a_completed_run_and_keeps_its_types(self, filled, story):
        assert filled.marks() == {}
        filled.append([story.mark(RUN_A, "nightly", "2026-11-22T10:00:00Z", "v4")])
        filled.append([story.mark(RUN_A, "counter", 41, 7, column="seq")])
        marks = filled.marks()
        assert sorted(marks) == ["counter", "nightly"]
        assert (marks["nightly"].value, marks["nightly"].key, marks["nightly"].run) == (
            "2026-11-22T10:00:00Z", "v4", RUN_A)
        assert (marks["counter"].column, marks["counter"].value, marks["counter"].key) == ("seq", 41, 7)
        filled.append([story.mark(RUN_A, "counter", 42, 1, column="seq")])
        assert (filled.marks()["counter"].value, filled.marks()["counter"].key) == (42, 1)
        assert [r.type for r in filled.read(run=RUN_A)][-1] == "MarkAdvanced"

    @pytest.mark.parametrize("run", [RUN_B, "ghost", "unsealed"])
    def test_a_mark_never_advances_with_a_run_that_did_not_complete(self, filled, story, run):
        filled.append([story.start("unsealed"), story.entry("unsealed", 1, "videos", ["v9"])])
        before = filled.last_seq()
        with pytest.raises(JournalError, match=run):
            filled.append([story.mark(run, "nightly", "2026-11-22", "v5")])
        assert filled.last_seq() == before and filled.marks() == {}

    def test_marks_are_rebuilt_and_verified_like_every_projection(self, filled, story):
        filled.append([story.mark(RUN_A, "nightly", 1.5, "v4"), story.mark(RUN_A, "other", None, "v1")])
        live = filled.projection_snapshot()
        assert len(live["marks"]) == 2
        filled.rebuild_projections()
        assert filled.projection_snapshot() == live
        assert filled.verify().ok

    def test_runs_filtered_by_option_status_and_limit(self, filled, story):
        filled.append(story.plan("queued", [("videos", ["v7"])], queued=True, job="nightly"))
        everything = filled.runs()
        assert [r.run for r in everything] == ["queued", RUN_B, RUN_A]
        assert [r.run for r in filled.runs(option=("limit", 10))] == [RUN_A]
        assert [r.run for r in filled.runs(option=("queued", True))] == ["queued"]
        assert [r.run for r in filled.runs(option=("job", "nightly"), statuses=["planned"])] == ["queued"]
        assert filled.runs(option=("job", "nightly"), statuses=["completed"]) == []
        assert [r.run for r in filled.runs(statuses=["completed", "interrupted"])] == [RUN_B, RUN_A]
        assert [r.run for r in filled.runs(limit=2)] == ["queued", RUN_B]
        assert filled.runs(statuses=["completed"]) == [r for r in everything if r.run == RUN_A]

    def test_workers_count_whose_outcome_each_entry_holds_now(self, journal, story):
        journal.append([story.start(RUN_A), story.entry(RUN_A, 1, "videos", ["v1"]),
                        story.entry(RUN_A, 2, "videos", ["v2"]), story.seal(RUN_A, 2)])
        assert journal.workers(RUN_A) == {}

        def applied(entry: int, worker: str | None) -> EntryApplied:
            return EntryApplied(run=RUN_A, at=story.at(), entry=entry, state="done",
                                outcomes=["created"], worker=worker)
        journal.append([applied(1, "host-a:11"), applied(2, "host-b:22")])
        assert journal.workers(RUN_A) == {"host-a:11": 1, "host-b:22": 1}
        journal.append([applied(2, "host-a:11")])  # a later outcome replaces the earlier one
        assert journal.workers(RUN_A) == {"host-a:11": 2}
        assert [row.worker for row in journal.entries(RUN_A)] == ["host-a:11", "host-a:11"]
        journal.append([applied(1, None)])  # the run's own applier
        assert journal.workers(RUN_A) == {"host-a:11": 1}
        journal.rebuild_projections()
        assert journal.workers(RUN_A) == {"host-a:11": 1}
