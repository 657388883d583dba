"""`/metrics`: the Prometheus text format through prometheus-client, counted from the journal.

Every number is read from the journal's projections at scrape time (a custom collector, not
counters bumped in memory), so it matches what `syncd runs` and `syncd show` say and
survives restarts. Counts that a resume can lower (a failed record later created) are
gauges; bytes copied only grow, so they are a counter.
"""
from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from journal import RUN_STATUSES, UNFINISHED, Journal, RunRow

from ..payload import unpack_rows
from ..plan import APPLIED_KEYS
from .jobs import Job
from .schedule import parse_time, utcnow
from .status import due_at, last_success, latest_run, queued_runs

OUTCOMES = APPLIED_KEYS
STATUSES = RUN_STATUSES


def run_bytes(journal: Journal, run_id: str) -> int:
    """Bytes of the files this run copied: each planned size whose latest outcome is created."""
    total = 0
    for entry in journal.entries(run_id):
        if entry.op != "copy" or entry.created == 0:
            continue
        applied = journal.applied(run_id, entry.entry)
        rows = unpack_rows(journal.planned(run_id, entry.entry).payload)  # [src, dst, size]
        outcomes = applied.outcomes if applied else []
        total += sum(row[2] or 0 for row, outcome in zip(rows, outcomes) if outcome == "created")
    return total


class BytesCopied:
    """Bytes copied over all runs; a completed run's figure never changes, so it is read once."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._completed: dict[str, int] = {}

    def total(self, runs: Iterable[RunRow]) -> int:
        total = 0
        for run in runs:
            if run.run not in self._completed:
                counted = run_bytes(self._journal, run.run)
                if run.status != "completed":
                    total += counted
                    continue
                self._completed[run.run] = counted
            total += self._completed[run.run]
        return total


class JournalCollector:
    def __init__(self, journal: Journal, jobs: list[Job], since: datetime,
                 running: Callable[[], set[str]]) -> None:
        self.journal = journal
        self.jobs = jobs
        self.since = since
        self.running = running
        self._bytes = BytesCopied(journal)
        self._lock = threading.Lock()  # scrapes may come in on several server threads

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            runs = self.journal.runs()
            yield from self._totals(runs)
            yield from self._per_job(runs)

    def _totals(self, runs: list[RunRow]) -> Iterable[Metric]:
        by_status = Counter(r.status for r in runs)
        status = GaugeMetricFamily("syncd_runs", "Runs in the journal by status", labels=["status"])
        for name in sorted(set(STATUSES) | set(by_status)):
            status.add_metric([name], by_status[name])
        records = GaugeMetricFamily("syncd_records", "Records by their latest outcome, over all runs",
                                    labels=["outcome"])
        for outcome in OUTCOMES:
            records.add_metric([outcome], sum(r.counts.get(outcome, 0) for r in runs))
        copied = CounterMetricFamily("syncd_file_bytes_copied", "Bytes of files copied, over all runs")
        copied.add_metric([], self._bytes.total(runs))
        queued = GaugeMetricFamily("syncd_queued_runs", "Runs queued for the daemon, not yet applied")
        queued.add_metric([], len(queued_runs(self.journal, ("planned",))))
        return [status, records, copied, queued]

    def _per_job(self, runs: list[RunRow]) -> Iterable[Metric]:
        now, running = utcnow(), self.running()
        job_runs = GaugeMetricFamily("syncd_job_runs", "Runs of each job by status", labels=["job", "status"])
        success = GaugeMetricFamily("syncd_job_last_success_timestamp_seconds",
                                    "When the job's last completed run finished", labels=["job"])
        lag = GaugeMetricFamily("syncd_job_lag_seconds",
                                "Seconds since the start of the job's last completed run: how old "
                                "the newest data it surely copied can be", labels=["job"])
        due = GaugeMetricFamily("syncd_job_next_due_timestamp_seconds", "When the job is due next",
                                labels=["job"])
        busy = GaugeMetricFamily("syncd_job_running", "1 while a run of the job is in progress",
                                 labels=["job"])
        unfinished = GaugeMetricFamily("syncd_job_unfinished", "1 while the job's latest run is "
                                       "not completed (it is retried before new records)", labels=["job"])
        for job in self.jobs:
            mine = Counter(r.status for r in runs if r.options.get("job") == job.name)
            for name in sorted(mine):
                job_runs.add_metric([job.name, name], mine[name])
            done, last = last_success(self.journal, job.name), latest_run(self.journal, job.name)
            if done is not None and done.finished_at:
                success.add_metric([job.name], parse_time(done.finished_at).timestamp())
                lag.add_metric([job.name], (now - parse_time(done.started_at)).total_seconds())
            due.add_metric([job.name], due_at(job, last, self.since).timestamp())
            busy.add_metric([job.name], int(job.name in running))
            unfinished.add_metric([job.name], int(last is not None and last.status in UNFINISHED))
        return [job_runs, success, lag, due, busy, unfinished]


def registry_for(collector: JournalCollector) -> CollectorRegistry:
    # Its own registry: only the journal's figures, none of the default process collectors.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
