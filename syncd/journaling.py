"""Where syncd meets its journal: plans go in as entries, outcomes as events.

Entries are appended in groups (group commit): one durable transaction per GROUP_RECORDS
records or so. That is safe because nothing is applied before it is sealed: a planner that
makes checkpoints (architecture §7) has each group appended together with its
CheckpointSealed, at a point between two groups of roots, and an applier may apply those
entries while the next are planned; other planners' entries wait for the PlanSealed, appended
only after every entry is durable. Hashing, compressing and appending run in a writer task
(worker threads) so the planner goes on reading the source meanwhile.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import anyio

from journal import FinishStatus, Journal
from journal.events import (
    AnyEvent, CheckpointSealed, EntryPlanned, PlanSealed, RunCancelled, RunFinished, RunStarted,
)

from . import failpoints
from .clock import now
from .payload import pack_and_hash, pack_rows, update_hash
from .plan import Checkpoint, PlannedEntry, PlanSummary
from .request import RunRequest

# Records per durable append: few fsyncs, bounded memory. SYNCD_GROUP_RECORDS overrides it,
# a test/tuning knob (crash tests set it small to kill between two appends of one plan).
GROUP_RECORDS = int(os.environ.get("SYNCD_GROUP_RECORDS") or 20_000)
QUEUE = 4  # planned entries waiting for the writer: bounds memory


def planned_event(run_id: str, number: int, entry: PlannedEntry) -> EntryPlanned:
    if entry.json_columns:  # update rows: [key, fields, before]
        payload = pack_rows(entry.rows)
        hashes = [update_hash(r, entry.json_columns) for r in entry.rows]
    else:
        payload, hashes = pack_and_hash(entry.rows, entry.json_at)
    return EntryPlanned(
        run=run_id, at=now(), entry=number, entity=entry.entity, op=entry.op,
        columns=entry.columns, keys=[str(k) for k in entry.keys], hashes=hashes, payload=payload)


class JournalSink:
    """Receives the planner's entries and makes them durable before they are applied.

    `write()` runs as a task beside the planner; `close()` ends its input, after which it
    drains what is queued and returns; then `seal()` (or `abort()` on failure). With
    `checkpointed`, entries are appended only with a checkpoint (or the seal), so a planner
    resumed from its last checkpoint never finds entries it would plan again.
    """

    def __init__(self, journal: Journal, run_id: str, request: RunRequest, *,
                 checkpointed: bool = False, resumed: CheckpointSealed | None = None,
                 on_checkpoint: Callable[[], None] = lambda: None) -> None:
        self.journal = journal
        self.run_id = run_id
        self.checkpointed = checkpointed
        self.on_checkpoint = on_checkpoint  # after each checkpoint is durable
        self.entries = 0 if resumed is None else resumed.entries
        # RunStarted goes out with the first group, so input errors the first group
        # uncovers (a URI with no blob_map entry) leave the journal untouched. A planning
        # resumed from a checkpoint goes on with the run's next entry.
        self._pending: list[AnyEvent] = [] if resumed else [RunStarted(
            run=run_id, at=now(), kind=request.kind, source=request.source,
            target=request.target, options=request.options())]
        self._started = resumed is not None
        self._pending_records = 0
        self._checkpoint: Checkpoint | None = None  # decisions since the last one appended
        self._send, self._receive = anyio.create_memory_object_stream[PlannedEntry | Checkpoint](QUEUE)

    async def add(self, entry: PlannedEntry) -> None:
        await self._send.send(entry)

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._send.send(checkpoint)

    async def close(self) -> None:
        await self._send.aclose()

    async def write(self) -> None:
        async with self._receive:
            async for item in self._receive:
                if isinstance(item, Checkpoint):
                    self._checkpoint = item if self._checkpoint is None else self._checkpoint.merge(item)
                    if self._pending_records >= GROUP_RECORDS and item.more:  # else the seal follows
                        await self._flush_checkpoint()
                    continue
                self.entries += 1
                event = await anyio.to_thread.run_sync(planned_event, self.run_id, self.entries, item)
                self._pending.append(event)
                self._pending_records += len(event.keys)
                if self._pending_records >= GROUP_RECORDS and not self.checkpointed:
                    await self._flush()

    async def _flush_checkpoint(self) -> None:
        checkpoint, self._checkpoint = self._checkpoint, None
        assert checkpoint is not None
        self._pending.append(CheckpointSealed(
            run=self.run_id, at=now(), entries=self.entries, cursor=checkpoint.cursor,
            summary=checkpoint.summary, known=checkpoint.known, remaps=checkpoint.remaps))
        await self._flush()
        self.on_checkpoint()
        failpoints.hit("plan.after-checkpoint")  # sealed; an applier process may be applying it

    async def seal(self, summary: PlanSummary) -> None:
        self._pending.append(PlanSealed(run=self.run_id, at=now(), entries=self.entries,
                                        summary=summary.to_json()))
        await self._flush()

    async def abort(self, status: FinishStatus, error: str, *, cancel: bool = False) -> None:
        """Planning stopped before the seal: only what checkpoints sealed may have been applied;
        resume plans on, unless the run is cancelled (an import's conflicts: planning it again
        would find them again)."""
        self._pending.clear()
        if self._started:
            await self._append([RunCancelled(run=self.run_id, at=now(), reason=error) if cancel
                                else RunFinished(run=self.run_id, at=now(), status=status, error=error)])

    async def _flush(self) -> None:
        events, self._pending, self._pending_records = self._pending, [], 0
        if events:
            await self._append(events)
            self._started = True

    async def _append(self, events: list[Any]) -> None:
        await anyio.to_thread.run_sync(self.journal.append, events)
        failpoints.hit("plan.after-append")


class NullSink:
    """A dry run: entries are counted by the planner and go nowhere."""

    entries = 0

    async def add(self, entry: PlannedEntry) -> None:
        self.entries += 1

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        pass
