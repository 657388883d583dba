"""Planning from an earlier run's journal: `syncd revert RUN` and the deletes of
`export --delete-exported`.

revert undoes what RUN applied, newest entry first (so children before parents): a record it
created is deleted, one it updated gets the journaled before-image of the fields it changed,
one it deleted is created again from its journaled row. A record changed since RUN (a created
one whose content is no longer the journaled hash, an updated one whose fields no longer hold
what RUN wrote, a deleted one that exists again) is a conflict: reported, left alone.

The deletes of an export remove the records the export wrote into its archive, children
first, each only if it still holds the exported content, and keep a parent that a record
staying behind still references.
"""
from __future__ import annotations

from typing import Any, Iterator

from journal import EntryPlanned, Journal, Outcome

from ..errors import Interrupted, RunStateError
from ..filters import Filter
from ..payload import json_positions, row_hash, unpack_rows
from ..plan import PlanSummary
from ..records import decode_json
from ..schema import Entity, get_in
from ..stores.base import Row
from . import emit
from .keys import key_of, sorted_keys
from .context import PlanContext
from .planner import Planner

UNDOABLE = ("create", "update", "delete")


class RevertPlanner(Planner):
    checkpointed = False  # its plan is sealed whole (architecture §7)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deleting: dict[str, set[Any]] = {}  # keys this plan deletes, per entity

    async def run(self) -> PlanSummary:
        journal, reverted = self._journal(), self.ctx.request.reverts
        assert reverted is not None
        for row in reversed(list(journal.entries(reverted))):
            if self._stopping():
                raise Interrupted(0)
            if row.op not in UNDOABLE or row.entity not in self.ctx.schema.entities:
                continue
            applied = journal.applied(reverted, row.entry)
            if applied is None:
                continue  # never applied: nothing to undo
            planned = journal.planned(reverted, row.entry)
            await self._undo(self.ctx.schema.entity(row.entity), planned, applied.outcomes)
        return self.summary

    def _journal(self) -> Journal:
        if self.ctx.journal is None:
            raise RunStateError("revert reads the journal, and there is none")
        return self.ctx.journal

    async def _undo(self, entity: Entity, planned: EntryPlanned, outcomes: list[Outcome]) -> None:
        rows = unpack_rows(planned.payload)
        done = {"create": "created", "update": "updated", "delete": "deleted"}[planned.op]
        picked = [(rows[i], planned.hashes[i]) for i in range(len(rows))[::-1] if outcomes[i] == done]
        if not picked:
            return
        if planned.op == "create":
            await self._delete_created(entity, planned.columns, picked)
        elif planned.op == "update":
            await self._restore_updated(entity, [r for r, _ in picked])
        else:
            await self._create_deleted(entity, planned.columns, [r for r, _ in picked])

    async def _delete_created(self, entity: Entity, columns: list[str], picked: list[tuple[list[Any], str]]) -> None:
        key_at = columns.index(entity.key)
        current = await self._current(entity, [r[key_at] for r, _ in picked])
        json_at = json_positions(columns, self.ctx.target_json_columns(entity.name))
        order = [entity.index(c) for c in columns]
        gone: list[Row] = []
        for row, planned_hash in picked:
            now = current.get(row[key_at])
            if now is None:
                continue  # already gone: nothing to undo
            if row_hash([now[i] for i in order], json_at) != planned_hash:
                self._conflict(entity, row[key_at], "changed since the run; left as it is")
                continue
            gone.append(now)
        used = await referenced(self.ctx, self._deleting, entity, {key_of(entity, r) for r in gone})
        for key in sorted_keys(used):
            self._conflict(entity, key, "a record that stays references it; kept")
        gone = [r for r in gone if key_of(entity, r) not in used]
        self._deleting.setdefault(entity.name, set()).update(key_of(entity, r) for r in gone)
        await self._emit(entity, "delete", gone)

    async def _restore_updated(self, entity: Entity, rows: list[list[Any]]) -> None:
        current = await self._current(entity, [r[0] for r in rows])
        patches: list[tuple[Any, dict[str, Any]]] = []
        before: dict[Any, dict[str, Any]] = {}
        for key, fields, *image in rows:
            now = current.get(key)
            if not image:
                self._conflict(entity, key, "journaled without a before-image (an older syncd)")
            elif now is None:
                self._conflict(entity, key, "deleted since the run")
            elif not _holds(entity, now, fields):
                self._conflict(entity, key, "changed since the run; left as it is")
            else:
                patches.append((key, image[0]))
                before[key] = fields
        self.summary.entity(entity.name).update += len(patches)
        self._note_keys(entity.name, [k for k, _ in patches], "update", "before-image put back")
        for entry in emit.update_entries(entity, patches, before,
                                          self.ctx.target_json_columns(entity.name)):
            await self.sink.add(entry)

    async def _create_deleted(self, entity: Entity, columns: list[str], rows: list[list[Any]]) -> None:
        key_at = columns.index(entity.key)
        present = await self.ctx.target.existing_keys(entity, [r[key_at] for r in rows])
        for r in rows:
            if r[key_at] in present:
                self._conflict(entity, r[key_at], "exists again since the run; left as it is")
        order = [columns.index(c) for c in entity.columns]
        back = [tuple(r[i] for i in order) for r in rows if r[key_at] not in present]
        await self._emit(entity, "create", emit.order_self_references(entity, back))

    async def _emit(self, entity: Entity, op: str, rows: list[Row]) -> None:
        counts = self.summary.entity(entity.name)
        json_columns = self.ctx.target_json_columns(entity.name)
        if op == "create":
            counts.create += len(rows)
            self._note(entity, rows, "create", "deleted by the run: put back")
            entries = emit.create_entries(entity, rows, json_columns)
        else:
            counts.delete += len(rows)
            self._note(entity, rows, "delete", "created by the run")
            entries = emit.delete_entries(entity, rows, json_columns)
        for entry in entries:
            await self.sink.add(entry)

    async def _current(self, entity: Entity, keys: list[Any]) -> dict[Any, Row]:
        return {key_of(entity, r): r for r in await self.ctx.target.fetch(entity, keys)}

    def _conflict(self, entity: Entity, key: Any, why: str) -> None:
        self.summary.entity(entity.name).conflict += 1
        self._note_keys(entity.name, [key], "conflict", why)


class ExportDeletePlanner(RevertPlanner):
    """The deletes of `export --delete-exported`: what the export run wrote into its archive,
    removed from the source, children first; a record that changed since the export, or a
    parent that a record staying behind references, is kept."""

    async def run(self) -> PlanSummary:
        journal, export = self._journal(), self.ctx.request.reverts
        assert export is not None
        for name in reversed(self.ctx.schema.order):
            entity = self.ctx.schema.entity(name)
            exported = dict(_exported(journal, export, entity))
            if not exported:
                continue
            await self._delete_created(entity, list(entity.columns), list(exported.values()))
        return self.summary


async def referenced(ctx: PlanContext, deleting: dict[str, set[Any]], entity: Entity,
                     keys: set[Any]) -> set[Any]:
    """Keys among `keys` that a record the plan does not delete (`deleting`) references."""
    kept: set[Any] = set()
    for child in ctx.schema.order:
        other = ctx.schema.entity(child)
        for ref in other.references:
            if ref.target != entity.name:
                continue
            going, ordered = deleting.get(child, set()) | (keys if child == entity.name else set()), sorted_keys(keys)
            for start in range(0, len(ordered), 1000):
                chunk = ordered[start:start + 1000]
                rows = await ctx.target.select_all(other, [Filter(ref.field, "in", chunk)])
                for r in rows:
                    if key_of(other, r) not in going:
                        kept.add(_value(other, r, ref.field.column, ref.field.path))
    return kept & keys


def _exported(journal: Journal, run_id: str, entity: Entity) -> Iterator[tuple[Any, tuple[list[Any], str]]]:
    """key → (row in the entity's column order, hash) of every record the export wrote."""
    for row in journal.entries(run_id):
        if row.entity != entity.name or row.op != "create":
            continue
        planned = journal.planned(run_id, row.entry)
        applied = journal.applied(run_id, row.entry)
        if planned.columns != list(entity.columns):
            raise RunStateError(f"{entity.name} has other columns than when run {run_id} exported it")
        key_at = planned.columns.index(entity.key)
        for r, h, o in zip(unpack_rows(planned.payload), planned.hashes, applied.outcomes if applied else []):
            if o in ("created", "skipped"):  # skipped: written by an earlier try of the export
                yield r[key_at], (r, h)


def _holds(entity: Entity, row: Row, fields: dict[str, Any]) -> bool:
    """Whether the record still holds what the run wrote into these fields."""
    for column, value in fields.items():
        now = row[entity.index(column)]
        if column in entity.json_columns:
            if decode_json(now) != decode_json(value):
                return False
        elif now != value:
            return False
    return True


def _value(entity: Entity, row: Row, column: str, path: tuple[str, ...]) -> Any:
    value = row[entity.index(column)]
    return get_in(decode_json(value), path) if path else value
