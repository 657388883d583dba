"""When a job is due: `every` intervals and cron expressions, timezone-aware.

A schedule answers one question: the job last ran at T (None: never), when is it due next?
The answer depends on the last run only, never on the ticks missed since, so a daemon that
was down through many windows runs the job once when it is back, then follows the schedule
again ("a missed window runs once").

Cron expressions are evaluated by cronsim in the job's time zone. cronsim follows Debian
cron across daylight-saving changes: a job whose time falls in the hour skipped in spring
runs once, right after the jump; a job whose time falls in the hour repeated in autumn runs
once, not twice; jobs with `*` in the minute or hour field follow real elapsed time.
`every` intervals are elapsed time, unaffected by any clock change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..config import JobConfig
from ..errors import ConfigError

_EVERY = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = (86400, 3600, 60, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utcnow() -> datetime:
    """The daemon's clock (frozen by tests with freezegun)."""
    return datetime.now(timezone.utc)


def parse_time(text: str) -> datetime:
    """A journal time (`2026-11-22T10:15:30.123456Z`) as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def parse_every(text: str) -> timedelta:
    """`45s`, `15m`, `1h30m`, `1d`: units in this order, each at most once; more than 0."""
    match = _EVERY.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h30m or 1d")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS) if n)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than 0 seconds")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Every:
    interval: timedelta
    text: str

    def next_after(self, last: datetime) -> datetime:
        return last + self.interval

    def first(self, since: datetime) -> datetime:
        return since  # never ran: due at once

    def describe(self) -> str:
        return f"every {self.text}"


@dataclass(frozen=True)
class Cron:
    expr: str
    zone: ZoneInfo

    def next_after(self, last: datetime) -> datetime:
        # cronsim works on the zone's wall-clock time, where `fold` tells apart the two
        # 02:30s of an autumn night. The local time is rebuilt on a plain datetime (_EPOCH):
        # freezegun's stand-in for datetime (in tests) loses `fold` when it converts.
        local = (_EPOCH + (last - _EPOCH)).astimezone(self.zone)
        return _EPOCH + (next(CronSim(self.expr, local)) - _EPOCH)

    def first(self, since: datetime) -> datetime:
        return self.next_after(since)  # never ran: the first tick after the daemon began

    def describe(self) -> str:
        return f"cron {self.expr} ({self.zone.key})"


Schedule = Every | Cron


def next_due(schedule: Schedule, last: datetime | None, since: datetime) -> datetime:
    """When the job is due: after its last run, or (never ran) relative to `since`."""
    return schedule.first(since) if last is None else schedule.next_after(last)


def schedule_of(name: str, job: JobConfig) -> Schedule:
    """The job's schedule; a bad one is a ConfigError naming its key."""
    if job.every is not None:
        try:
            return Every(parse_every(job.every), job.every.strip())
        except ValueError as exc:
            raise ConfigError(f"jobs.{name}.every: {exc}") from None
    assert job.cron is not None  # the config loader insists on exactly one of them
    zone = _zone(name, job.timezone)
    expr = " ".join(job.cron.split())
    if len(expr.split()) != 5:
        raise ConfigError(f"jobs.{name}.cron: {job.cron!r} needs 5 fields: minute hour day month weekday")
    try:
        CronSim(expr, utcnow().astimezone(zone))
    except CronSimError as exc:
        raise ConfigError(f"jobs.{name}.cron: {job.cron!r} is not a valid cron expression ({exc})") from None
    return Cron(expr, zone)


def _zone(name: str, text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"jobs.{name}.timezone: unknown time zone {text!r} (e.g. \"Europe/Berlin\", \"UTC\")") from None
