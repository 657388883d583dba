"""The applier: the ONLY code that writes to a target.

It executes a sealed run's entries in plan order. Every entry it touches was made durable
in the journal before (invariant 1). Effects are idempotent — create skips what exists,
update sets the same values again, a file copy lands by atomic rename and is skipped when
the target already holds the same bytes — so re-applying an entry whose outcome was lost
in a crash changes nothing (invariant 2). Resume asks the journal's entries projection
for what is not done, so its cost follows what is left.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from journal import ACTIVE, DECISIONS, TODO_STATES, EntryRow, EntryState, FinishStatus, Journal, Outcome
from journal.events import ApplyStarted, EntryApplied, EntryPlanned, RunFinished

from . import blobs, failpoints
from .clock import now
from .errors import PermanentError, RunStateError, StoreError, TransientError
from .filters import Filter
from .payload import json_positions, row_hash, unpack_rows
from .retry import RETRIES, backoff
from .schema import Entity, Schema
from .stores.base import Atomic, RecordStore
from .tasks import task_group

log = logging.getLogger("syncd.applier")
READ_AHEAD = 2  # entries loaded ahead of the one being written: bounds memory


Loaded = tuple[EntryRow, EntryPlanned, list[list[Any]]]


@dataclass
class ApplyResult:
    status: FinishStatus
    failures: list[str] = field(default_factory=list)


@dataclass
class Progress:
    """What the applier reports after each entry; the CLI draws it."""

    # what is left to apply: records of record entries, files of copy entries
    on_start: Callable[[int, int], None] = lambda records, files: None
    on_entry: Callable[[str, int], None] = lambda entity, records: None
    on_files: Callable[[int, int], None] = lambda files, nbytes: None  # a files entry begins
    on_file: Callable[[int, bool], None] = lambda nbytes, ok: None  # one file done (ok: not failed)


class MoveRolledBack(Exception):
    """A move's entry or check failed inside its transaction: all of it is rolled back."""


class Applier:
    def __init__(self, journal: Journal, run_id: str, target: RecordStore, schema: Schema,
                 *, stopping: Callable[[], bool] = lambda: False, progress: Progress | None = None,
                 file_workers: int = blobs.DEFAULT_FILE_WORKERS) -> None:
        self.journal = journal
        self.run_id = run_id
        self.target = target
        self.schema = schema
        self.stopping = stopping
        self.progress = progress or Progress()
        self.file_workers = file_workers
        self._resuming = False
        self._clone = False
        self._blocked: set[str] = set()  # entities a failed entry blocks (and their dependents)

    async def run(self, *, followed: bool = False) -> ApplyResult:
        """Apply what the sealed run has left, then end it (RunFinished). `followed`: an
        applier process applied it while it was planned and exited cleanly, so only entries
        it never reached are left (its failures stand: resume retries them), and its
        ApplyStarted is this attempt's."""
        run = self.journal.run(self.run_id)
        if run is None or run.sealed_at is None:
            raise RunStateError(f"run {self.run_id} has no sealed plan")
        if run.status in ("completed", "cancelled"):
            raise RunStateError(f"run {self.run_id} is {run.status}; it cannot be applied again")
        todo = list(self.journal.entries(self.run_id, states=("pending",) if followed else TODO_STATES))
        self._resuming = run.attempts > 0  # an earlier attempt may have written pending entries
        self._clone = run.kind in ("clone", "move")  # every row created: its key was chosen new
        if todo or not followed:
            self.progress.on_start(sum(e.records for e in todo if e.op != "copy"),
                                   sum(e.records for e in todo if e.op == "copy"))
            await self._append(ApplyStarted(run=self.run_id, at=now(), attempt=run.attempts + 1))
        result = self._followed_result() if followed else ApplyResult("completed")
        if run.kind == "move":  # one target transaction for the whole plan
            await self._apply_atomic(todo, run.summary.get("move") or {}, result)
        else:
            await self._apply_entries(todo, result)
        await self._append(RunFinished(run=self.run_id, at=now(), status=result.status,
                                       error="; ".join(result.failures[:3]) or None))
        return result

    async def follow(self, poll: float = 0.05) -> bool:
        """Apply the run's entries as its planner seals checkpoints, while it plans the rest
        (the applier process, syncd/follower.py). True once the run is sealed and every entry
        has been applied once; False when told to stop, or when the planning ended without a
        seal (interrupted or failed: resume plans on from the last checkpoint). Appends
        ApplyStarted before its first entry, never RunFinished: the planning process ends the
        run when this has returned."""
        applied_up_to, started = 0, False
        result = ApplyResult("completed")
        # A run resumed after an interrupted planning is still "interrupted" until it applies
        # again: only a finish newer than the one found at the start ends the following.
        first = self.journal.run(self.run_id)
        ended_before = None if first is None else first.finished_at
        while not self.stopping():
            run = self.journal.run(self.run_id)
            if run is not None and run.status not in ACTIVE \
                    and run.finished_at != ended_before:
                return False
            ready = 0 if run is None else run.checkpoint
            todo = [e for e in self.journal.entries(self.run_id, states=("pending",))
                    if applied_up_to < e.entry <= ready] if ready > applied_up_to else []
            if todo and run is not None:
                if not started:
                    self._resuming = run.attempts > 0  # a killed applier may have written some
                    await self._append(ApplyStarted(run=self.run_id, at=now(), attempt=run.attempts + 1))
                    started = True
                await self._apply_entries(todo, result)
                if result.status == "interrupted":
                    return False
            applied_up_to = ready
            if run is not None and run.sealed_at is not None and ready >= run.entries:
                return True
            await anyio.sleep(poll)
        return False

    async def apply_one(self, number: int, worker: str) -> EntryApplied:
        """Entry `number` for a `syncd worker`, its outcome returned, not appended: the
        worker's lease fences that (journal/postgres/leases.py). Another worker may have died
        after writing part of it, so rows found written with the planned content count as
        created."""
        self._resuming = True
        entry = await anyio.to_thread.run_sync(self.journal.planned, self.run_id, number)
        rows = unpack_rows(entry.payload)
        failpoints.hit("apply.before-entry")
        applied = (self._outcome(entry, "done", ["skipped"] * len(rows), None, 0)
                   if entry.op in DECISIONS else await self._apply(entry, rows))
        failpoints.hit("apply.after-effect")
        return msgspec.structs.replace(applied, worker=worker)

    def _followed_result(self) -> ApplyResult:
        """The failures an applier process recorded."""
        result = ApplyResult("completed")
        for row in self.journal.entries(self.run_id, states=("failed",)):
            result.status = "failed"
            result.failures.append(f"{row.entity} entry {row.entry}: {row.error}")
        return result

    async def _apply_entries(self, todo: list[EntryRow], result: ApplyResult) -> None:
        async with task_group() as tasks:
            send, receive = anyio.create_memory_object_stream[Loaded](READ_AHEAD)
            tasks.start_soon(self._read_ahead, todo, send)
            await self._apply_all(receive, result)
            tasks.cancel_scope.cancel()  # stopped early: the reader may still be waiting

    async def _apply_all(self, loaded: MemoryObjectReceiveStream[Loaded], result: ApplyResult) -> None:
        blocked = self._blocked
        async with loaded:
            async for row, entry, rows in loaded:
                if self.stopping():
                    result.status = "interrupted"
                    return
                if row.op != "copy" and row.entity in blocked:
                    continue
                failpoints.hit("apply.before-entry")
                if entry.op in DECISIONS:  # a journaled decision, nothing to write
                    applied = self._outcome(entry, "done", ["skipped"] * len(rows), None, 0)
                else:
                    applied = await self._apply(entry, rows)
                failpoints.hit("apply.after-effect")  # written to the target, outcome not journaled yet
                # Not fsynced: losing it to a power cut only means resume redoes an
                # idempotent entry; the RunFinished below makes all of them durable.
                await self._append(applied, durable=False)
                failpoints.hit("apply.after-outcome")
                if row.op != "copy":  # files advance one by one (on_file)
                    self.progress.on_entry(row.entity, row.records)
                if applied.state == "failed":
                    result.status = "failed"
                    result.failures.append(f"{row.entity} entry {row.entry}: {applied.error}")
                    if row.op != "copy":  # file failures never stop records (grace semantics)
                        blocked |= dependents(self.schema, row.entity)

    async def _read_ahead(self, todo: list[EntryRow], send: MemoryObjectSendStream[Loaded]) -> None:
        """Load and decompress the next entries while the current one is being written."""
        async with send:
            for row in todo:
                await send.send(await anyio.to_thread.run_sync(self._load, row))

    def _load(self, row: EntryRow) -> Loaded:
        entry = self.journal.planned(self.run_id, row.entry)
        return row, entry, unpack_rows(entry.payload)

    async def _apply_atomic(self, todo: list[EntryRow], move: dict[str, Any], result: ApplyResult) -> None:
        """Every entry in ONE target transaction, then the plan's checks (counts per scope,
        no moved record or its parents left in the old scope) before the commit; a failed
        entry or check rolls all of it back and fails every entry, naming the cause. The
        outcomes are journaled after the commit: a crash in between leaves them pending, and
        resume applies the (idempotent) entries again, the checks then passing as planned."""
        target = self.target
        if not isinstance(target, Atomic):
            raise PermanentError(f"{target.name} cannot apply a move in one transaction")
        outcomes: list[EntryApplied] = []
        try:
            async with target.atomic():
                for row in todo:
                    entry, rows = self._load(row)[1:]
                    applied = (self._outcome(entry, "done", ["skipped"] * len(rows), None, 0)
                               if entry.op in DECISIONS else await self._apply(entry, rows))
                    if applied.state == "failed":
                        raise MoveRolledBack(f"{entry.entity} entry {entry.entry}: {applied.error}")
                    outcomes.append(applied)
                for check in move.get("checks", []):
                    await self._check(target, check)
                failpoints.hit("store.before-commit")
        except MoveRolledBack as exc:
            reason = f"rolled back, nothing of the move was written: {exc}"
            outcomes = [EntryApplied(run=self.run_id, at=now(), entry=row.entry, state="failed",
                                     outcomes=["failed"] * row.records, error=reason, retries=0)
                        for row in todo]
            result.status = "failed"
            result.failures.append(reason)
        failpoints.hit("apply.after-effect")
        for row, applied in zip(todo, outcomes):
            await self._append(applied, durable=False)
            self.progress.on_entry(row.entity, row.records)

    async def _check(self, target: Atomic, check: dict[str, Any]) -> None:
        entity = self.schema.entity(check["entity"])
        filters = [Filter(entity.field(check["field"]), "eq", check["value"])]
        if "keys" in check:
            filters.append(Filter(entity.field(entity.key), "in", check["keys"]))
        found = await target.count(entity, filters)
        if found != check["count"]:
            what = (f"{check['referenced_by']} records point at {found} {entity.name} left in "
                    f"{check['field']} = {check['value']}" if "keys" in check
                    else f"{entity.name} with {check['field']} = {check['value']}: {found}, "
                         f"planned {check['count']}")
            raise MoveRolledBack(f"check failed: {what}")

    async def _apply(self, entry: EntryPlanned, rows: list[list[Any]]) -> EntryApplied:
        if entry.op == "copy":
            return await self._copy_files(entry, rows)
        entity = self.schema.entity(entry.entity)
        retries = 0
        while True:
            try:
                if entry.op == "create":
                    flags = await self.target.create(entity, entry.columns, rows)
                    outcomes: list[Outcome] = await self._create_outcomes(
                        entity, entry, rows, flags, retries > 0)
                    if self._clone and "skipped" in outcomes:
                        return self._taken(entry, outcomes, retries)
                elif entry.op == "delete":
                    outcomes = await self._delete(entity, entry, rows, retries > 0)
                else:
                    flags = await self.target.update(entity, [(r[0], r[1]) for r in rows])  # r[2]: a before-image
                    outcomes = ["updated" if f else "skipped" for f in flags]
                return self._outcome(entry, "done", outcomes, None, retries)
            except TransientError as exc:
                # Only from stores that do not retry themselves (SQLite's "database is
                # locked"). A store that does (HTTP) raises RetriesExhausted, a
                # PermanentError, when it gives up: retried here, its requests would multiply.
                if retries >= RETRIES:
                    return self._outcome(entry, "failed", None, str(exc), retries)
                log.warning("%s: %s entry %d: %s; retry %d of %d", self.target.name, entry.entity,
                            entry.entry, exc, retries + 1, RETRIES)  # a wait is never silent
                await anyio.sleep(backoff(retries))
                retries += 1
            except StoreError as exc:
                return self._outcome(entry, "failed", None, str(exc), retries)

    async def _delete(self, entity: Entity, entry: EntryPlanned, rows: list[list[Any]],
                      retried: bool) -> list[Outcome]:
        """Rows are before-images (what revert puts back). The plan saw each row present, so
        one already gone on resume or retry was deleted by the earlier try: deleted, as a
        create found written is created."""
        key_at = entry.columns.index(entity.key)
        flags = await self.target.delete(entity, [r[key_at] for r in rows])
        again = self._resuming or retried
        return ["deleted" if f or again else "skipped" for f in flags]

    async def _create_outcomes(self, entity: Entity, entry: EntryPlanned, rows: list[list[Any]],
                               flags: list[bool], retried: bool) -> list[Outcome]:
        """created / skipped per row. When an earlier try may have written part of the entry
        (on resume, or on a retry after a store failed between the requests of a split
        write), a row found present that holds exactly the planned content was written by
        that try (the plan saw it absent), so the journal says created, not skipped."""
        outcomes: list[Outcome] = ["created" if f else "skipped" for f in flags]
        if not (self._resuming or retried or self._clone) or all(flags):
            return outcomes
        key_at = entry.columns.index(entity.key)
        present = await self.target.fetch(entity, [r[key_at] for r, f in zip(rows, flags) if not f])
        order = [entity.index(c) for c in entry.columns]
        json_at = json_positions(entry.columns, entity.json_columns)  # as the planner hashed
        written = {row[entity.index(entity.key)]: row_hash([row[i] for i in order], json_at)
                   for row in present}
        for i, row in enumerate(rows):
            if not flags[i] and written.get(row[key_at]) == entry.hashes[i]:
                outcomes[i] = "created"
        return outcomes

    async def _copy_files(self, entry: EntryPlanned, rows: list[list[Any]]) -> EntryApplied:
        """Copies file_workers at a time; each one's failure is its own (the others go on)."""
        outcomes: list[Outcome] = ["failed"] * len(rows)
        errors: list[str] = []
        limiter = anyio.CapacityLimiter(self.file_workers)
        self.progress.on_files(len(rows), sum(r[2] or 0 for r in rows))

        async def one(i: int, src: str, dst: str, planned: blobs.Planned) -> None:
            try:
                outcomes[i] = await anyio.to_thread.run_sync(copy_file, src, dst, planned,
                                                             self._resuming, limiter=limiter)
            except StoreError as exc:
                errors.append(str(exc))
            self.progress.on_file(planned.size or 0, outcomes[i] != "failed")

        async with task_group() as tg:
            for i, (src, dst, *planned) in enumerate(rows):
                tg.start_soon(one, i, src, dst, blobs.Planned(*planned))
        state: EntryState = "failed" if errors else "done"
        return self._outcome(entry, state, outcomes, "; ".join(errors[:3]) or None, 0)

    def _taken(self, entry: EntryPlanned, outcomes: list[Outcome], retries: int) -> EntryApplied:
        """A clone's key that something else took between planning and applying (another
        run, the application): that record was not cloned, so the entry fails naming it."""
        taken = [k for k, o in zip(entry.keys, outcomes) if o == "skipped"]
        failed: list[Outcome] = ["failed" if o == "skipped" else o for o in outcomes]
        return self._outcome(entry, "failed", failed, f"{len(taken)} new key(s) taken since planning, "
                             f"first {entry.entity} {taken[0]}: plan the clone again", retries)

    def _outcome(self, entry: EntryPlanned, state: EntryState, outcomes: list[Outcome] | None,
                 error: str | None, retries: int) -> EntryApplied:
        return EntryApplied(run=self.run_id, at=now(), entry=entry.entry, state=state,
                            outcomes=outcomes or ["failed"] * len(entry.keys),
                            error=error, retries=retries)

    async def _append(self, event: Any, durable: bool = True) -> None:
        await anyio.to_thread.run_sync(partial(self.journal.append, [event], durable=durable))


def copy_file(src: str, dst: str, planned: blobs.Planned, resuming: bool) -> Outcome:
    """created, or skipped when the target already holds the planned bytes. On resume those
    bytes were put there by this run's interrupted attempt: created, as for records.

    A first attempt trusts the plan's look at the target (GCS refuses the write if it
    appeared since); a resumed one looks again, so it copies only what is still missing."""
    if blobs.retrying(lambda: blobs.ensure(src, dst, planned, look_first=resuming)):
        failpoints.hit("file.after-copy")
        return "created"
    return "created" if resuming else "skipped"


def dependents(schema: Schema, entity: str) -> set[str]:
    """The entity and every entity that references it, directly or not."""
    out, todo = {entity}, [entity]
    while todo:
        current = todo.pop()
        for name in schema.order:
            if name not in out and current in schema.parents(name):
                out.add(name)
                todo.append(name)
    return out
