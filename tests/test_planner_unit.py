"""The planner's steps on the in-memory store: no SQLite file, no journal, no CLI.

Each test declares a small source and target (syncd/stores/memory.py), plans into a list, and
checks the entries: parent closure, natural-key matching, self-reference order, update diffs.
"""
from __future__ import annotations

from typing import Any

import anyio

from syncd.config import EntityConfig
from syncd.filters import parse_filters
from syncd.plan import Checkpoint, PlannedEntry, PlanSummary
from syncd.planner import Planner, PlanContext
from syncd.planner.closure import ParentClosure
from syncd.planner.diff import diff_rows
from syncd.request import RunRequest
from syncd.schema import build_schema
from syncd.stores.memory import MemoryStore, Table
from syncd.transforms import Transformer

TABLES = {
    "sites": Table(["id INTEGER", "name TEXT NOT NULL"]),
    "devices": Table(["id TEXT", "serial TEXT NOT NULL", "site_id INTEGER"], foreign_keys={"site_id": "sites"}),
    "videos": Table(["id TEXT", "title TEXT", "meta JSON", "updated_at TEXT"]),
    "folders": Table(["id INTEGER", "parent_id INTEGER"], foreign_keys={"parent_id": "folders"}),
}
CONFIG = {
    "devices": EntityConfig(natural_key=["serial"]),
    "videos": EntityConfig(references={"meta.device_id": "devices"}, compare_ignore=["updated_at"]),
}
SOURCE_ROWS: dict[str, list[dict[str, Any]]] = {
    "sites": [{"id": 1, "name": "Lyon"}, {"id": 2, "name": "Oslo"}],
    "devices": [{"id": "d1", "serial": "S1", "site_id": 1}, {"id": "d2", "serial": "S2", "site_id": 2}],
    "videos": [{"id": "v1", "title": "one", "meta": {"device_id": "d1"}, "updated_at": "t1"},
               {"id": "v2", "title": "two", "meta": {"device_id": "d2"}, "updated_at": "t1"}],
    "folders": [{"id": 1, "parent_id": 2}, {"id": 2, "parent_id": 3}, {"id": 3, "parent_id": None}],
}


class ListSink:
    def __init__(self) -> None:
        self.entries: list[PlannedEntry] = []
        self.checkpoints: list[Checkpoint] = []

    async def add(self, entry: PlannedEntry) -> None:
        self.entries.append(entry)

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        self.checkpoints.append(checkpoint)

    def rows(self, entity: str, op: str = "create") -> list[list[Any]]:
        return [list(r) for e in self.entries if e.entity == entity and e.op == op for r in e.rows]


def context(target_rows: dict[str, list[dict[str, Any]]], source_rows: dict[str, list[dict[str, Any]]] = SOURCE_ROWS,
            **request: Any) -> PlanContext:
    source = MemoryStore.from_tables("prod", TABLES, rows=source_rows)
    target = MemoryStore.from_tables("dev", TABLES, rows=target_rows)
    built = build_schema(anyio.run(source.describe), CONFIG)
    req = RunRequest.build(kind="copy", source="prod", target="dev", **request)
    root = built.entity(req.entity or "videos")
    return PlanContext(req, source, target, built, root, parse_filters(req.filters, root),
                       (root.name,), Transformer())


def plan(ctx: PlanContext) -> tuple[PlanSummary, ListSink]:
    sink = ListSink()
    summary = anyio.run(lambda: Planner(ctx, sink).run())
    return summary, sink


def test_closure_brings_every_parent_recursively_once() -> None:
    ctx = context({}, entity="videos", filters=("id:eq:v1",))
    closure = ParentClosure(ctx)
    v1 = anyio.run(lambda: ctx.source.fetch(ctx.root, ["v1"]))
    first = anyio.run(lambda: closure.parents({"videos": v1}))
    assert {name: [r[0] for r in rows] for name, rows in first.rows.items()} == {"devices": ["d1"], "sites": [1]}
    again = anyio.run(lambda: closure.parents({"videos": v1}))
    assert again.rows == {}  # decided in an earlier group: never planned twice


def test_natural_key_match_returns_remaps_and_references_follow_them() -> None:
    ctx = context({"sites": [{"id": 1, "name": "Lyon"}],
                   "devices": [{"id": "dev-9", "serial": "S1", "site_id": 1}]}, entity="videos")
    devices = ctx.schema.entity("devices")
    rows = anyio.run(lambda: ctx.source.fetch(devices, ["d1", "d2"]))
    diff = anyio.run(lambda: diff_rows(ctx, devices, rows))
    assert diff.remaps == {"d1": "dev-9"} and [r[0] for r in diff.creates] == ["d2"]
    assert ctx.transformer.remaps == {}  # diff only reads; the planner applies the remaps
    summary, sink = plan(ctx)
    assert [r[0] for r in sink.rows("devices")] == ["d2"]
    assert sink.rows("devices", "match") == [["d1", "dev-9"]]
    metas = {r[0]: r[2] for r in sink.rows("videos")}
    assert '"dev-9"' in metas["v1"] and '"d2"' in metas["v2"]  # v1 points at the matched device
    assert summary.entities["devices"].existing == 1 and summary.entities["devices"].create == 1


def test_self_references_are_created_parents_first() -> None:
    ctx = context({}, entity="folders", filters=("id:eq:1",))
    summary, sink = plan(ctx)
    assert [r[0] for r in sink.rows("folders")] == [3, 2, 1]
    assert summary.entities["folders"].selected == 1 and summary.entities["folders"].dependencies == 2


def test_update_patches_only_fields_that_differ() -> None:
    current = {"sites": SOURCE_ROWS["sites"], "devices": SOURCE_ROWS["devices"],
               "videos": [{"id": "v1", "title": "old", "meta": {"device_id": "d1"}, "updated_at": "t0"},
                          {"id": "v2", "title": "two", "meta": {"device_id": "d2"}, "updated_at": "t0"}]}
    summary, sink = plan(context(current, entity="videos", update=True))
    # updated_at is ignored; the before-image (what revert puts back) rides along
    assert sink.rows("videos", "update") == [["v1", {"title": "one"}, {"title": "old"}]]
    assert sink.rows("videos") == []
    assert summary.entities["videos"].update == 1


def test_json_columns_hash_as_canonical_json() -> None:
    """The same document hashes the same however its text is ordered or spaced (jsonb
    reorders keys); other columns, and text that is not JSON, hash exactly as they are."""
    from syncd.payload import row_hash

    sqlite_text = ["v1", '{"b": 1, "a": [1, 2, {"z": null, "y": "é"}]}', "{not json"]
    jsonb_text = ["v1", '{"a": [1, 2, {"y": "é", "z": null}], "b": 1}', "{not json"]
    assert row_hash(sqlite_text, (1, 2)) == row_hash(jsonb_text, (1, 2))
    assert row_hash(sqlite_text) != row_hash(jsonb_text)  # not a JSON column: exact
    other = ["v1", '{"a": [1, 2, {"y": "é", "z": null}], "b": 2}', "{not json"]
    assert row_hash(other, (1, 2)) != row_hash(jsonb_text, (1, 2))
    assert row_hash(["v1", None, "{not json"], (1, 2)) == row_hash(["v1", None, "{not json"])


def test_a_planning_resumed_from_a_checkpoint_plans_what_an_uninterrupted_one_planned_after_it() -> None:
    """Groups of one root: v1 decides d1 (matched by natural key to dev-9) and its site; v3
    uses d1 too. Resumed from the checkpoint after v1, the planner neither plans d1 again nor
    forgets where it went, and makes the very entries and counts of the uninterrupted plan."""
    rows = {**SOURCE_ROWS, "videos": [*SOURCE_ROWS["videos"],
                                      {"id": "v3", "title": "three", "meta": {"device_id": "d1"}, "updated_at": "t1"}]}
    target = {"sites": [{"id": 1, "name": "Lyon"}], "devices": [{"id": "dev-9", "serial": "S1", "site_id": 1}]}

    def entries(sink: ListSink) -> list[tuple[Any, ...]]:
        return [(e.entity, e.op, [list(r) for r in e.rows]) for e in sink.entries]

    whole, ctx = ListSink(), context(target, rows, entity="videos")
    summary = anyio.run(lambda: Planner(ctx, whole, chunk=1).run())
    assert [c.cursor["after"] for c in whole.checkpoints] == ["v1", "v2", "v3"]
    assert [c.more for c in whole.checkpoints] == [True] * 3  # a full page cannot know it is the last
    assert whole.checkpoints[0].remaps == {"devices": [["d1", "dev-9"]]}
    first = len([e for e in whole.entries if e.entity == "videos" and e.rows[0][0] == "v1"])
    cut = next(i for i, e in enumerate(whole.entries) if e.entity == "videos") + first

    resumed = ListSink()
    planner = Planner(context(target, rows, entity="videos"), resumed, chunk=1)
    planner.resume_from(whole.checkpoints[:1])
    assert anyio.run(planner.run) == summary
    assert entries(resumed) == entries(whole)[cut:]
    assert '"dev-9"' in next(r[2] for e in resumed.entries if e.entity == "videos" for r in e.rows if r[0] == "v3")
