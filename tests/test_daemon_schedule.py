"""When jobs are due (syncd/daemon/schedule.py, status.due_at), with the clock frozen.

The daemon's decision is `due_at(job, latest run of the job, since) <= now`, the latest run
read from a real journal; `simulate` makes that decision at every step of frozen time and
journals a run whenever it says yes, as the daemon does.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from journal import ApplyStarted, PlanSealed, RunFinished, RunStarted, SqliteJournal
from syncd.clock import new_run_id, now
from syncd.config import JobConfig
from syncd.daemon.jobs import Job
from syncd.daemon.schedule import parse_every, schedule_of, utcnow
from syncd.daemon.status import due_at, latest_run
from syncd.errors import ConfigError

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def job(name: str = "nightly", **schedule: str) -> Job:
    config = JobConfig(kind="copy", source="prod", target="dev", entity="videos", **schedule)
    return Job(name, config, schedule_of(name, config))


def record_run(journal: SqliteJournal, name: str, status: str = "completed") -> None:
    """A run of the job, started and finished at the frozen time."""
    run = new_run_id()
    journal.append([RunStarted(run=run, at=now(), kind="copy", source="prod", target="dev",
                               options={"job": name}),
                    PlanSealed(run=run, at=now(), entries=0),
                    ApplyStarted(run=run, at=now(), attempt=1),
                    RunFinished(run=run, at=now(), status=status)])


def simulate(journal: SqliteJournal, j: Job, start: datetime, end: datetime, step: timedelta,
             since: datetime | None = None) -> list[datetime]:
    """Step frozen time from start to end; run the job whenever it is due. Run times, UTC."""
    ran = []
    # cronsim is left unpatched: freezegun's datetime stand-in drops `fold`, which cronsim
    # needs in the hour an autumn night repeats.
    with freeze_time(start, ignore=["cronsim"]) as clock:
        while utcnow() < end:
            if due_at(j, latest_run(journal, j.name), since or start) <= utcnow():
                record_run(journal, j.name)
                ran.append(utcnow())
            clock.tick(step)
    return ran


@pytest.fixture
def journal(tmp_path: Path) -> SqliteJournal:
    return SqliteJournal(tmp_path / "journal.db")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


# -- every -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1), ("45s", 45), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800),
    ("1d2h3m4s", 93784), (" 10m ", 600)])
def test_every_durations(text: str, seconds: int) -> None:
    assert parse_every(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "0s", "0m0s", "1x", "1m1h", "15 m", "-5m", "1.5h"])
def test_bad_every_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_every(text)


def test_every_job_is_due_at_once_then_after_each_interval(journal: SqliteJournal) -> None:
    j = job(every="15m")
    start = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert due_at(j, None, start) == start  # never ran: due at once
    ran = simulate(journal, j, start, start + timedelta(hours=1), timedelta(minutes=1))
    assert ran == [start + timedelta(minutes=m) for m in (0, 15, 30, 45)]


def test_every_job_missed_windows_after_downtime_run_once(journal: SqliteJournal) -> None:
    j = job(every="15m")
    with freeze_time(datetime(2026, 11, 22, 10, 0, tzinfo=UTC)):
        record_run(journal, j.name)
    back = datetime(2026, 11, 22, 16, 7, tzinfo=UTC)  # 25 windows missed
    ran = simulate(journal, j, back, back + timedelta(minutes=40), timedelta(minutes=1))
    assert ran == [back, back + timedelta(minutes=15), back + timedelta(minutes=30)]


def test_a_failing_run_is_retried_once_per_interval_not_in_a_loop(journal: SqliteJournal) -> None:
    j = job(every="10m")
    at = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    with freeze_time(at):
        record_run(journal, j.name)
    with freeze_time(at + timedelta(minutes=25)):  # a later attempt of it failed just now
        record_run(journal, j.name, status="failed")
        assert due_at(j, latest_run(journal, j.name), at) == utcnow() + timedelta(minutes=10)


def test_every_is_elapsed_time_across_a_dst_change(journal: SqliteJournal) -> None:
    j = job(every="1h")
    start = local(2026, 10, 24, 22, 0).astimezone(UTC)
    ran = simulate(journal, j, start, start + timedelta(hours=8), timedelta(minutes=5))
    assert [b - a for a, b in zip(ran, ran[1:])] == [timedelta(hours=1)] * 7


# -- cron --------------------------------------------------------------------------------------

def test_cron_job_that_never_ran_waits_for_its_first_tick(journal: SqliteJournal) -> None:
    j = job(cron="0 3 * * *", timezone="Europe/Berlin")
    start = local(2026, 11, 19, 10, 0).astimezone(UTC)
    assert due_at(j, None, start) == local(2026, 11, 20, 3, 0)
    ran = simulate(journal, j, start, start + timedelta(days=2), timedelta(minutes=5))
    assert ran == [local(2026, 11, 20, 3, 0), local(2026, 11, 21, 3, 0)]


def test_cron_job_missed_windows_after_downtime_run_once(journal: SqliteJournal) -> None:
    j = job(cron="0 3 * * *", timezone="Europe/Berlin")
    with freeze_time(local(2026, 11, 16, 3, 0)):  # Monday's run, then the daemon was down
        record_run(journal, j.name)
    back = local(2026, 11, 19, 10, 0)  # Thursday: three 03:00 windows were missed
    ran = simulate(journal, j, back, local(2026, 11, 20, 12, 0), timedelta(minutes=5))
    assert ran == [back, local(2026, 11, 20, 3, 0)]  # once on return, then on schedule


def test_cron_at_a_time_skipped_by_spring_forward_runs_once_after_the_jump(journal: SqliteJournal) -> None:
    # 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    j = job(cron="30 2 * * *", timezone="Europe/Berlin")
    start = local(2026, 3, 28, 0, 0)
    ran = simulate(journal, j, start, local(2026, 3, 31, 0, 0), timedelta(minutes=1))
    assert [t.astimezone(BERLIN).isoformat() for t in ran] == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_cron_at_a_time_repeated_by_fall_back_runs_once(journal: SqliteJournal) -> None:
    # 2026-10-25 in Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    j = job(cron="30 2 * * *", timezone="Europe/Berlin")
    start = local(2026, 10, 24, 0, 0)
    ran = simulate(journal, j, start, local(2026, 10, 27, 0, 0), timedelta(minutes=1))
    assert [t.astimezone(BERLIN).isoformat() for t in ran] == [
        "2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_hourly_cron_follows_real_hours_across_both_dst_changes(journal: SqliteJournal) -> None:
    spring = simulate(journal, job("spring", cron="0 * * * *", timezone="Europe/Berlin"),
                      local(2026, 3, 29, 0, 30), local(2026, 3, 30, 0, 30), timedelta(minutes=5))
    fall = simulate(journal, job("fall", cron="0 * * * *", timezone="Europe/Berlin"),
                    local(2026, 10, 25, 0, 30), local(2026, 10, 26, 0, 30), timedelta(minutes=5))
    assert len(spring) == 23 and len(fall) == 25  # the short and the long day
    assert all(b - a == timedelta(hours=1) for a, b in zip(fall, fall[1:]))
    # 02:00 CEST, 02:00 CET (the repeated hour), 03:00 CET
    assert fall[1:4] == [datetime(2026, 10, 25, h, 0, tzinfo=UTC) for h in (0, 1, 2)]


def test_cron_in_utc_by_default() -> None:
    j = job(cron="0 3 * * *")
    since = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert due_at(j, None, since) == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


# -- bad schedules -----------------------------------------------------------------------------

@pytest.mark.parametrize(("schedule", "key", "words"), [
    ({"every": "15 minutes"}, "jobs.nightly.every", "not a duration"),
    ({"every": "0s"}, "jobs.nightly.every", "longer than 0"),
    ({"cron": "61 * * * *"}, "jobs.nightly.cron", "not a valid cron expression"),
    ({"cron": "0 3 * *"}, "jobs.nightly.cron", "needs 5 fields"),
    ({"cron": "0 0 3 * * *"}, "jobs.nightly.cron", "needs 5 fields"),
    ({"cron": "0 3 31 2 *"}, "jobs.nightly.cron", "not a valid cron expression"),
    ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "jobs.nightly.timezone", "unknown time zone"),
])
def test_bad_schedules_name_their_key(schedule: dict[str, str], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        job(**schedule)
    assert str(caught.value).startswith(f"{key}: ") and words in str(caught.value)
