"""Jobs: `[jobs.NAME]` definitions turned into RunRequests, checked before the daemon starts.

`load_jobs` parses every schedule; `check_jobs` opens the stores and checks each job's
entity, filters, incremental column and target the way `connect()` checks a CLI request.
Anything wrong is a ConfigError naming the job's key, so a bad definition stops the daemon
at start (exit 2) instead of failing at its first tick.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from journal import MarkRow

from .. import adapters
from .. import operations as ops
from ..config import Config, JobConfig
from ..errors import ConfigError, InputError
from ..filters import parse_filters
from ..request import RunRequest
from ..schema import Entity
from .schedule import Schedule, schedule_of

T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    name: str
    config: JobConfig
    schedule: Schedule

    def request(self, mark: MarkRow | None) -> RunRequest:
        """The next run's request: incremental jobs start just past their mark (a mark kept
        for another column, before the job's definition changed, does not apply)."""
        c = self.config
        after = None
        if c.incremental and mark is not None and mark.column == c.incremental:
            after = (mark.value, mark.key)
        return RunRequest.from_spec(c, after=after, job=self.name)


def load_jobs(config: Config) -> list[Job]:
    return [Job(name, job, schedule_of(name, job)) for name, job in config.jobs.items()]


def find_job(jobs: list[Job], name: str) -> Job:
    for job in jobs:
        if job.name == name:
            return job
    known = ", ".join(j.name for j in jobs) or "none"
    raise InputError(f"unknown job {name!r} (known: {known})")


async def check_jobs(config: Config, jobs: list[Job]) -> None:
    for job in jobs:
        await check_job(config, job)


async def check_job(config: Config, job: Job) -> None:
    """Check the job against its stores' schemas; errors name the job's key."""
    c, where = job.config, f"jobs.{job.name}"
    source = _keyed(f"{where}.source", lambda: adapters.open_store(config, c.source, readonly=True))
    try:
        schema = await adapters.load_schema(config, source)
        root = _keyed(f"{where}.entity", lambda: schema.entity(c.entity or schema.root()))
        _keyed(f"{where}.filters", lambda: parse_filters(tuple(c.filters), root))
        for field in c.clear:
            _keyed(f"{where}.clear", lambda: root.field(field))
        if c.incremental:
            _keyed(f"{where}.incremental", lambda: _orderable(root, c.incremental or ""))
    finally:
        await source.close()
    try:
        async with adapters.connect(config, job.request(None)):
            pass  # the target, and everything else connect() checks before any write
    except InputError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _orderable(root: Entity, column: str) -> None:
    if column not in root.columns:
        raise InputError(f"entity {root.name!r} has no column {column!r} to select incrementally by")


def _keyed(key: str, check: Callable[[], T]) -> T:
    try:
        return check()
    except InputError as exc:
        raise ConfigError(f"{key}: {exc}") from None
