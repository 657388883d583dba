"""`syncd worker`: applies the entries of runs planned with `--workers`, sharing them with every
other worker on the same Postgres journal, on any machine (DESIGN §8.5, architecture §8).

Each of its `concurrency` slots claims one entry at a time through a lease
(journal/postgres/leases.py): pending, of a sealed checkpoint, its dependencies done, held by
no live worker. It applies it with the run's Applier (the only code that writes a target),
and records the outcome in the transaction that gives the lease up; a heartbeat renews the
leases it holds meanwhile. The worker that finds a sealed run with nothing left to do ends it
(RunFinished). A worker killed mid-entry loses its leases with its database session; the
next claim by any worker takes the entry over and applies it again, idempotently.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import anyio

from journal import ACTIVE, JournalError, RejectedEvent, RunRow
from journal.postgres.leases import Lease, LeaseLost, Leases

from . import failpoints
from .adapters import load_schema, open_store
from .applier import Applier
from .clock import now
from .config import Config
from .plan import FILES
from .daemon.logs import Log
from .errors import InputError, SyncdError
from .schema import Schema
from .stores.base import RecordStore
from .tasks import task_group

LEASE_VAR = "SYNCD_LEASE_SECONDS"
LEASE = 10.0  # seconds a lease lives unless renewed (a worker that hangs is passed over after it)
POLL = 0.5  # seconds between looks for work when there was none


def lease_seconds() -> float:
    text = os.environ.get(LEASE_VAR, "").strip()
    try:
        seconds = float(text) if text else LEASE
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise InputError(f"{LEASE_VAR}={text!r} is not a number of seconds above 0")
    return seconds


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Target:
    """A run target, opened once per worker: its store, schema and entity dependencies."""

    store: RecordStore
    schema: Schema
    depends: dict[str, list[str]]


class Worker:
    def __init__(self, config: Config, leases: Leases, log: Log, *, concurrency: int = 1,
                 once: bool = False, stopping: Callable[[], bool] = lambda: False) -> None:
        self.config = config
        self.leases = leases
        self.journal = leases.journal
        self.log = log
        self.concurrency = concurrency
        self.once = once
        self.stopping = stopping
        self.name = leases.owner
        self.held: set[Lease] = set()
        self.applied = 0
        self._targets: dict[str, Target] = {}
        self._appliers: dict[str, Applier] = {}
        self._started: set[str] = set()  # runs this worker saw applying (ApplyStarted appended)
        self._work = anyio.Event()  # set when the journal notifies that work may be there
        self._opening = anyio.Lock()  # one slot opens a run's target; the others wait for it
        self._skipped: set[str] = set()  # runs whose target this worker cannot open (said once)

    async def run(self) -> int:
        """Until stopped (or, with `once`, until nothing is left to claim); entries applied."""
        self.log.info("worker started", worker=self.name, concurrency=self.concurrency,
                      lease_seconds=self.leases.ttl)
        try:
            async with task_group() as beat:
                beat.start_soon(self._heartbeat)
                beat.start_soon(self._listen)
                async with task_group() as slots:
                    for _ in range(self.concurrency):
                        slots.start_soon(self._slot)
                beat.cancel_scope.cancel()
        finally:
            for target in self._targets.values():
                await target.store.close()
        self.log.info("worker stopped", worker=self.name, applied=self.applied)
        return self.applied

    async def _slot(self) -> None:
        while not self.stopping():
            try:
                claimed = await self._claim()
                if claimed is not None:
                    await self._apply(*claimed)
                    continue
            except JournalError as exc:  # the database restarting, say: its leases died with it
                self.log.error("cannot reach the journal; trying again", worker=self.name, error=str(exc))
            if self.once and not self.held:
                return
            with anyio.move_on_after(POLL):  # woken sooner when the journal says so
                await self._work.wait()

    async def _claim(self) -> tuple[Lease, Applier] | None:
        """One entry of the oldest active run that has one ready; runs found done are ended."""
        runs = await anyio.to_thread.run_sync(lambda: self.journal.runs(
            option=("workers", True), statuses=ACTIVE))
        for run in reversed(runs):  # oldest first
            applier = await self._applier(run)
            if applier is None:
                continue
            depends = self._targets[run.target].depends
            got = await anyio.to_thread.run_sync(self.leases.claim, run.run, depends, 1)
            if got:
                self.held.add(got[0])
                return got[0], applier
            if run.sealed_at is not None and not await anyio.to_thread.run_sync(self.leases.busy, run.run):
                status = await anyio.to_thread.run_sync(self.leases.finish_run, run.run, depends, now())
                if status is not None:
                    self.log.info("run finished", run=run.run, status=status, worker=self.name)
                    self._appliers.pop(run.run, None)
        return None

    async def _apply(self, lease: Lease, applier: Applier) -> None:
        try:
            if lease.run not in self._started:  # a write under the append lock: once per run
                await anyio.to_thread.run_sync(self.leases.start_applying, lease.run, now())
                self._started.add(lease.run)
            outcome = await applier.apply_one(lease.entry, self.name)
            await anyio.to_thread.run_sync(self.leases.finish, lease, outcome)
            failpoints.hit("apply.after-outcome")
            self.applied += 1
            if outcome.state == "failed":
                self.log.warning("entry failed", run=lease.run, entry=lease.entry, error=outcome.error)
        except LeaseLost as exc:
            self.log.warning("lease lost; another worker applied the entry", run=lease.run,
                             entry=lease.entry, reason=str(exc))
        except RejectedEvent as exc:  # the run was cancelled meanwhile
            self.log.warning("outcome refused by the journal", run=lease.run, entry=lease.entry,
                             reason=str(exc))
        finally:
            self.held.discard(lease)

    async def _applier(self, run: RunRow) -> Applier | None:
        async with self._opening:
            if run.run not in self._appliers and run.run not in self._skipped:
                target = await self._target(run)
                if target is None:
                    self._skipped.add(run.run)
                    return None
                self._appliers[run.run] = Applier(self.journal, run.run, target.store, target.schema,
                                                  stopping=self.stopping)
            return self._appliers.get(run.run)

    async def _target(self, run: RunRow) -> Target | None:
        """The run's target, opened once; None (said once) when this worker cannot open it."""
        if run.target not in self._targets:
            if run.target not in self.config.environments:
                self.log.error("run's target is not an environment of this worker's config; skipped",
                               run=run.run, target=run.target)
                return None
            store = open_store(self.config, run.target, readonly=False)
            try:
                schema = await load_schema(self.config, store)
            except SyncdError as exc:
                await store.close()
                self.log.error("cannot open the run's target; skipped", run=run.run, target=run.target,
                               error=str(exc))
                return None
            self._targets[run.target] = Target(store, schema, dependencies(schema))
        return self._targets[run.target]

    async def _listen(self) -> None:
        """Wake the idle slots as soon as the journal notifies a checkpoint, a seal or an
        outcome (which may free dependents), instead of at their next poll."""
        while True:
            if await anyio.to_thread.run_sync(self.leases.wait_for_work, POLL, abandon_on_cancel=True):
                self._work.set()
                self._work = anyio.Event()

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.leases.ttl / 3)
            lost = await anyio.to_thread.run_sync(self.leases.renew, set(self.held))
            for lease in lost & self.held:  # not one whose outcome was recorded meanwhile
                self.log.warning("lease expired before renewal; its outcome will not be recorded",
                                 run=lease.run, entry=lease.entry)


def dependencies(schema: Schema) -> dict[str, list[str]]:
    """Entity → the entities whose earlier entries its entries wait for (architecture §3.6):
    the ones it references, itself when it references itself (a parent planned in an earlier
    entry of the same entity is written first), and the file copies when it has blob fields
    (blobs before the records that point at them; copy entries carry the label FILES)."""
    return {name: [*schema.parents(name), *([name] if _references_itself(schema, name) else []),
                   *([FILES] if schema.entity(name).blob_fields else [])]
            for name in schema.order}


def _references_itself(schema: Schema, name: str) -> bool:
    return any(ref.target == name for ref in schema.entity(name).references)
