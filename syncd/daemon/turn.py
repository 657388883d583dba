"""One turn of a job: end its unfinished run, then plan and apply a new one, then move the mark.

The order is what keeps an incremental job exact: a new run is planned only once the job's
previous run completed and its mark was journaled, so each run starts where the last one
that surely reached the target stopped. A run that does not complete (failed, interrupted)
leaves the mark where it was; the next turn resumes that same run before anything new.
The caller holds the job's lock, so no other process works on the job meanwhile.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import anyio
import msgspec

from journal import MarkAdvanced, RunRow, Journal

from .. import operations as ops
from ..clock import new_run_id, now
from ..config import Config
from ..locks import shared
from ..plan import PlanSummary
from .jobs import Job
from .logs import Log
from .status import latest_run

Outcome = tuple[str, str]  # (run id, status)


async def take_turn(config: Config, journal: Journal, job: Job, *, log: Log,
                    due: Callable[[RunRow | None], bool], stopping: Callable[[], bool],
                    started: Callable[[str], None] = lambda run_id: None) -> list[Outcome]:
    """Resume the job's unfinished run if it has one; then, if `due(latest run)`, run a new
    one. `started(run_id)` is told each run before work on it begins. Returns what ran."""
    done: list[Outcome] = []
    last = latest_run(journal, job.name)
    if last is not None and last.status != "completed":
        started(last.run)
        log.info("resuming run", job=job.name, run=last.run, status=last.status)
        status = await ops.finish_run(config, journal, last.run, stopping=stopping)
        done.append((last.run, status))
        _finished(log, journal, job, last.run, status)
        if status != "completed":
            return done
        last = journal.run(last.run)
    if last is not None:
        await advance_mark(journal, job, last, log)
    if stopping() or not due(last):
        return done
    done.append(await _new_run(config, journal, job, log, stopping, started))
    return done


async def _new_run(config: Config, journal: Journal, job: Job, log: Log,
                   stopping: Callable[[], bool], started: Callable[[str], None]) -> Outcome:
    run_id = _fresh_run_id(journal)
    started(run_id)
    request = job.request(journal.marks().get(job.name))
    if shared(journal) and request.kind in ("copy", "transfer"):
        # A journal several daemons share: this one plans, every daemon's worker applies.
        request = msgspec.structs.replace(request, workers=True)
    log.info("run started", job=job.name, run=run_id, kind=request.kind,
             **({"after": list(request.after)} if request.after else {}))
    planned, status = await ops.plan_and_apply(config, journal, request, run_id=run_id,
                                               stopping=stopping)
    _finished(log, journal, job, run_id, status)
    run = journal.run(run_id)
    if run is not None and status == "completed":
        await advance_mark(journal, job, run, log)
    return run_id, status


async def advance_mark(journal: Journal, job: Job, run: RunRow, log: Log) -> None:
    """Journal the job's new mark: the last root the completed `run` selected. Also repairs
    a mark lost to a crash between the run's end and this event (nothing else moves it)."""
    mark = run.summary.get("mark")
    if run.status != "completed" or not mark:
        return
    current = journal.marks().get(job.name)
    if current is not None and current.run == run.run:
        return
    event = MarkAdvanced(run=run.run, at=now(), name=job.name, column=mark["column"],
                         value=mark["value"], key=mark["key"])
    await anyio.to_thread.run_sync(partial(journal.append, [event]))
    log.info("mark advanced", job=job.name, run=run.run, column=mark["column"],
             value=mark["value"], key=mark["key"])


def _fresh_run_id(journal: Journal) -> str:
    # Ids are second-resolution plus 16 random bits: a job every second may draw one twice.
    while True:
        run_id = new_run_id()
        if journal.run(run_id) is None:
            return run_id


def _finished(log: Log, journal: Journal, job: Job, run_id: str, status: str) -> None:
    run = journal.run(run_id)
    fields: dict[str, Any] = {"job": job.name, "run": run_id, "status": status}
    if run is not None:
        summary = PlanSummary.from_json(run.summary)
        fields["selected"] = {name: c.selected for name, c in summary.entities.items() if c.selected}
        fields["counts"] = run.counts
    (log.info if status == "completed" else log.warning)("run finished", **fields)
