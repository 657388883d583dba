"""The daemon: resume at start, then run due jobs and queued runs until a signal stops it.

- At start it brings every unfinished run of a job, and every queued run, to an end.
- Each second it starts the jobs that are due and the runs queued with `--plan-only
  --queue`. A job runs in one task at a time, under its file lock (so `syncd jobs run`
  in another process cannot run it at the same time either).
- SIGTERM/SIGINT: no new work; each run stops after its entry in flight (the applier checks
  between entries) and is journaled as interrupted; the daemon exits 0. If the entries in
  flight take longer than the grace period, or a second signal comes, their runs are
  journaled as interrupted at once and the process exits without waiting: the entry's
  target transaction dies uncommitted, or committed and unrecorded, and resume handles
  both (architecture §3.2).
"""
from __future__ import annotations

import os
import signal
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import anyio
from anyio.abc import TaskGroup

from journal import Journal, JournalError, RunFinished, RunStatus

from .. import journals
from .. import operations as ops
from ..clock import now
from ..config import Config
from ..errors import Interrupted, SyncdError
from . import logs
from .jobs import Job, check_jobs, load_jobs
from ..locks import hold_daemon_lock, job_lock, shared
from .logs import Log
from .metrics import JournalCollector, exposition, registry_for
from .schedule import utcnow
from .status import due_at, iso, job_view, latest_run, queued_runs, queued_view
from .turn import take_turn
from .web import Routes, StatusServer, parse_addr

POLL = 1.0  # seconds between looks at the journal for due jobs and queued runs
# Queued runs a restarted daemon brings to an end: sealed ones it (or a crash) left, and
# ones whose planning was cut off. A queued run still "planning" may be in a CLI's hands.
QUEUED_AT_START: tuple[RunStatus, ...] = ("planned", "applying", "interrupted", "failed")


class Daemon:
    def __init__(self, config: Config, journal: Journal, journal_path: Path, jobs: list[Job],
                 log: Log, *, once: bool, grace: float, stopped_before: Callable[[], bool]) -> None:
        self.config = config
        self.journal = journal
        self.journal_path = journal_path
        self.jobs = jobs
        self.log = log
        self.once = once
        self.grace = grace
        self.since = utcnow()
        self._stopped_before = stopped_before  # a signal that came before the loop listened
        self._signalled = False
        self._busy_jobs: set[str] = set()
        self._busy_runs: set[str] = set()
        self._elsewhere: set[str] = set()  # jobs whose lock another process holds
        self._in_flight: dict[str, str] = {}  # job name or queued run id → run being worked on
        self._problems = 0  # runs that did not complete, errors: --once exits 1 on any
        self._wake = anyio.Event()
        self._work_ended = False  # jobs and queued runs are done: the built-in worker stops too
        self._worker_ended = anyio.Event()
        if not shared(journal):
            self._worker_ended.set()  # there is none

    def stopping(self) -> bool:
        return self._signalled or self._stopped_before()

    def running(self) -> set[str]:
        return set(self._busy_jobs)  # one C-level copy: safe to call from the server threads

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> int:
        self.log.info("daemon started", pid=os.getpid(), journal=str(self.journal_path),
                      jobs=[j.name for j in self.jobs], once=self.once)
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._watch_signals)
            if shared(self.journal):  # daemons sharing a Postgres journal all apply its runs
                outer.start_soon(self._apply_entries)
            async with anyio.create_task_group() as work:
                self._look(work, self._start_unfinished)
                await self._loop(work)
            self._work_ended = True  # the worker's slots end after their entry in hand
            with anyio.move_on_after(self.grace):
                await self._worker_ended.wait()
            outer.cancel_scope.cancel()
        self.log.info("daemon stopped", problems=self._problems)
        return 0 if self.stopping() or not self.once or not self._problems else 1

    async def _apply_entries(self) -> None:
        """A `syncd worker` inside the daemon, until it stops (syncd/worker.py)."""
        from ..worker import Worker, lease_seconds, worker_name
        leases = self.journal.leases(worker_name(), lease_seconds())  # type: ignore[attr-defined]
        try:
            await Worker(self.config, leases, self.log,
                         stopping=lambda: self.stopping() or self._work_ended).run()
        finally:
            self._worker_ended.set()
            await anyio.to_thread.run_sync(leases.close)

    async def _loop(self, work: TaskGroup) -> None:
        while not self.stopping():
            self._wake = anyio.Event()  # set by a signal, or by work that ended
            soonest = self._look(work, self._start_due, lambda w: self._start_queued(w, ("planned",)))
            if self.once:
                return
            wait = POLL if soonest is None else (soonest - utcnow()).total_seconds()
            with anyio.move_on_after(min(POLL, max(wait, 0.0))):
                await self._wake.wait()

    def _look(self, work: TaskGroup, *steps: Callable[[TaskGroup], Any]) -> Any:
        """Run the steps that read the journal to start work; the first one's answer. A
        journal that cannot be read now (locked too long, disk trouble) is logged and
        looked at again at the next turn of the loop."""
        try:
            return [step(work) for step in steps][0]
        except JournalError as exc:
            self._problems += 1
            self.log.error("cannot read the journal; trying again", error=str(exc))
            return None

    def _start_unfinished(self, work: TaskGroup) -> None:
        for job in self.jobs:
            last = latest_run(self.journal, job.name)
            if last is not None and last.status != "completed":
                self._start_job(work, job)
        self._start_queued(work, QUEUED_AT_START)

    def _start_due(self, work: TaskGroup) -> datetime | None:
        """Start the idle jobs that are due; the soonest due time of the others."""
        at, soonest = utcnow(), None
        for job in self.jobs:
            if job.name in self._busy_jobs:
                continue
            due = due_at(job, latest_run(self.journal, job.name), self.since)
            if due <= at:
                self._start_job(work, job)
            elif soonest is None or due < soonest:
                soonest = due
        return soonest

    def _start_queued(self, work: TaskGroup, statuses: tuple[RunStatus, ...]) -> None:
        for run in queued_runs(self.journal, statuses):
            if run.run not in self._busy_runs:
                self._busy_runs.add(run.run)
                work.start_soon(self._queued_task, run.run)

    def _start_job(self, work: TaskGroup, job: Job) -> None:
        self._busy_jobs.add(job.name)  # before the task starts: never two runs of one job
        work.start_soon(self._job_task, job)

    # -- work -----------------------------------------------------------------------------------

    async def _job_task(self, job: Job) -> None:
        lock = job_lock(self.journal, job.name)
        try:
            if not lock.acquire():
                if job.name not in self._elsewhere:
                    self.log.warning("job is running in another process; waiting for it", job=job.name,
                                     pid=lock.holder())
                self._elsewhere.add(job.name)
                return
            self._elsewhere.discard(job.name)
            with lock:
                await self._guarded(job.name, take_turn(
                    self.config, self.journal, job, log=self.log, stopping=self.stopping,
                    due=lambda last: due_at(job, last, self.since) <= utcnow(),
                    started=lambda run_id: self._in_flight.__setitem__(job.name, run_id)))
        finally:
            self._in_flight.pop(job.name, None)
            self._busy_jobs.discard(job.name)
            self._wake.set()

    async def _queued_task(self, run_id: str) -> None:
        self._in_flight[run_id] = run_id
        try:
            self.log.info("applying queued run", run=run_id)
            await self._guarded(run_id, self._finish_queued(run_id))
        finally:
            self._in_flight.pop(run_id, None)
            self._busy_runs.discard(run_id)
            self._wake.set()

    async def _finish_queued(self, run_id: str) -> list[tuple[str, str]]:
        status = await ops.finish_run(self.config, self.journal, run_id, stopping=self.stopping)
        run = self.journal.run(run_id)
        self.log.info("run finished", run=run_id, status=status, queued=True,
                      counts=run.counts if run else {})
        return [(run_id, status)]

    async def _guarded(self, what: str, work: Any) -> None:
        """Run one job turn or queued run; whatever goes wrong is logged, never fatal."""
        try:
            done = await work
            self._problems += sum(status not in ("completed", "interrupted") for _, status in done)
        except Interrupted:
            self.log.info("stopped while planning; the next start plans the run again", work=what)
        except (SyncdError, JournalError) as exc:
            self._problems += 1
            self.log.error("run failed", work=what, error=str(exc))
        except Exception as exc:  # a bug: logged, and the other jobs go on
            self._problems += 1
            self.log.error("internal error", work=what, error=f"{type(exc).__name__}: {exc}")

    # -- stopping -------------------------------------------------------------------------------

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            name = "before start"
            if not self._stopped_before():
                async for signum in signals:
                    name = signal.Signals(signum).name
                    break
            self._signalled = True
            self._wake.set()
            self.log.info("stopping: no new work; runs stop after their entry in flight",
                          signal=name, grace_seconds=self.grace)
            with anyio.move_on_after(self.grace):
                async for signum in signals:
                    self.log.warning("second signal: not waiting for the entries in flight",
                                     signal=signal.Signals(signum).name)
                    break
            self._abandon()

    def _abandon(self) -> None:
        """The grace period ran out (or a second signal came): journal the runs in flight as
        interrupted and leave now; resume redoes their entries (idempotent, architecture §3.2)."""
        for run_id in set(self._in_flight.values()):
            run = self.journal.run(run_id)
            if run is not None and run.status in ("planning", "applying"):
                self.journal.append([RunFinished(
                    run=run_id, at=now(), status="interrupted",
                    error=f"daemon stopped; the entry in flight did not finish within {self.grace:g}s")])
                self.log.warning("run interrupted", run=run_id)
        self.log.info("daemon stopped", abandoned=sorted(self._in_flight.values()))
        self.log.flush()
        os._exit(0)  # worker threads may be deep in a target transaction: do not wait for them

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        running = self.running()
        return {
            "daemon": {"pid": os.getpid(), "started_at": iso(self.since), "journal": str(self.journal_path),
                       "once": self.once, "stopping": self.stopping()},
            "jobs": [job_view(self.journal, job, self.since, job.name in running) for job in self.jobs],
            "queued": queued_view(self.journal),
        }

    def routes(self) -> Routes:
        registry = registry_for(JournalCollector(self.journal, self.jobs, self.since, self.running))
        return Routes(healthy=lambda: not self.stopping(), status=self.status,
                      metrics=lambda: exposition(registry))


def main(config: Config, *, once: bool, status_addr: str | None, log_format: str, grace: float,
         stopped_before: Callable[[], bool]) -> int:
    """`syncd daemon`: check everything, take the journal's daemon lock, run until stopped."""
    jobs = load_jobs(config)
    addr = parse_addr(status_addr) if status_addr else None
    anyio.run(check_jobs, config, jobs)
    path = journals.journal_path(config)
    with ExitStack() as stack:
        journal = stack.enter_context(journals.journal_for(config))
        daemon_lock = hold_daemon_lock(journal)
        if daemon_lock is not None:
            stack.enter_context(daemon_lock)
        server = StatusServer(addr) if addr else None
        log = logs.setup(log_format)
        daemon = Daemon(config, journal, path, jobs, log, once=once, grace=grace,
                        stopped_before=stopped_before)
        if server is not None:
            server.start(daemon.routes())
            stack.callback(server.stop)
            log.info("status server listening", url=server.url)
        return anyio.run(daemon.run)
    raise AssertionError("unreachable")

