"""Entry leases: how `syncd worker` processes on several machines share the entries of sealed
checkpoints, each applied exactly once (DESIGN §8.5, docs/research/leases-procrastinate.md for
why this is not a job queue's).

A lease is a row of `leases` (run, entry, owner, epoch, expires_at, owner_pid):
- **claim**: one statement picks pending entries of sealed checkpoints whose dependencies are
  done and that no live lease holds (`FOR UPDATE SKIP LOCKED`, so claimers never wait for each
  other), and inserts or takes over their lease, the epoch one higher each time.
  A lease is live until it expires unless renewed, and only while its owner's database
  session (`owner_pid`) exists: a worker killed mid-entry loses its session at once (its
  kernel closes the socket), so another worker takes the entry over at its next poll, not
  after the lease's time; the time is for a worker that hangs or is cut off.
- **renew**: the owner moves expires_at on, fenced by owner and epoch.
- **finish**: the entry's outcome is appended in the same transaction that deletes the lease,
  fenced by owner and epoch: a worker whose lease was taken over records nothing (LeaseLost),
  so each entry has one outcome, and the effect it wrote was idempotent (the applier's
  invariant 2): a second try finds its rows written with the planned content.
- Dependencies: an entry waits for every earlier entry of the run, of an entity its entity
  depends on, that is not done (the run's target schema says which: `depends`).

Times are the database's `now()`: the workers' clocks never matter.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg

from ..errors import JournalError
from ..events import ApplyStarted, EntryApplied, RunFinished
from ..states import FinishStatus
from .connection import PgSql

if TYPE_CHECKING:
    from .journal import PostgresJournal


class LeaseLost(JournalError):
    """The entry's lease expired and another worker took it over: this worker's outcome is
    not recorded (the other's is)."""


@dataclass(frozen=True, order=True)
class Lease:
    run: str
    entry: int
    epoch: int


# Live: not expired, and its owner's session still exists.
_LIVE = ("(l.expires_at > now() AND EXISTS (SELECT 1 FROM pg_stat_activity a"
         " WHERE a.pid = l.owner_pid))")
# Entries of a run's sealed checkpoints to apply (pending, or failed before the latest
# ApplyStarted: a resume), free of live leases, whose dependencies are done.
_READY = f"""
SELECT e.run, e.entry FROM entries e JOIN runs r ON r.run = e.run
WHERE e.run = ? AND e.entry <= r.checkpoint
  AND (e.state = 'pending' OR (e.state = 'failed' AND e.applied_seq < r.apply_seq))
  AND r.status IN ('planning', 'planned', 'applying')
  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.run = e.run AND l.entry = e.entry AND {_LIVE})
  AND NOT EXISTS (SELECT 1 FROM entries d WHERE d.run = e.run AND d.entry < e.entry
                  AND d.state <> 'done'
                  AND d.entity IN (SELECT jsonb_array_elements_text(?::jsonb -> e.entity)))
"""
_CLAIM = f"""
WITH ready AS ({_READY} ORDER BY e.entry LIMIT ? FOR UPDATE OF e SKIP LOCKED)
INSERT INTO leases AS l (run, entry, owner, epoch, expires_at, owner_pid)
SELECT run, entry, ?, 1, now() + make_interval(secs => ?), pg_backend_pid() FROM ready
ON CONFLICT (run, entry) DO UPDATE SET owner = excluded.owner, epoch = l.epoch + 1,
    expires_at = excluded.expires_at, owner_pid = excluded.owner_pid
    WHERE NOT {_LIVE}
RETURNING l.run, l.entry, l.epoch
"""
_FENCE = "l.run = ? AND l.entry = ? AND l.owner = ? AND l.epoch = ?"


class Leases:
    """One worker's leases; its own database session marks it alive (thread-safe)."""

    def __init__(self, journal: PostgresJournal, owner: str, ttl: float) -> None:
        self.journal = journal
        self.owner = owner
        self.ttl = ttl
        self._conn = PgSql(journal.connect())
        self._lock = threading.Lock()
        self._listener = journal.connect()  # its own session: waiting on it blocks nothing else
        self._listener.execute(f"LISTEN {journal.channel}")

    def wait_for_work(self, timeout: float) -> bool:
        """Until the journal says entries may be claimable (a checkpoint, a seal, an outcome)
        or `timeout` seconds pass; whether it said so. One waiter at a time."""
        try:
            if self._listener.closed or self._listener.broken:
                self._listener = self.journal.connect()
                self._listener.execute(f"LISTEN {self.journal.channel}")
            return any(True for _ in self._listener.notifies(timeout=timeout, stop_after=1))
        except psycopg.Error as exc:
            raise self.journal._storage_error(exc) from exc

    @contextmanager
    def _session(self) -> Iterator[PgSql]:
        """The lease session, its errors mapped as the journal's (a broken one reopened next time)."""
        with self._lock:
            try:
                if self._conn.conn.closed or self._conn.conn.broken:
                    self._conn = PgSql(self.journal.connect())
                yield self._conn
            except psycopg.Error as exc:
                raise self.journal._storage_error(exc) from exc

    def claim(self, run: str, depends: dict[str, list[str]], limit: int) -> list[Lease]:
        params = (run, msgspec.json.encode(depends).decode(), limit, self.owner, self.ttl)
        with self._session() as conn, conn.conn.transaction():
            rows = conn.execute(_CLAIM, params).fetchall()
        return sorted(Lease(*row) for row in rows)

    def renew(self, leases: Iterable[Lease]) -> set[Lease]:
        """Extend the leases; the ones this worker no longer holds."""
        lost = set()
        with self._session() as conn:
            for lease in leases:
                moved = conn.execute(
                    f"UPDATE leases l SET expires_at = now() + make_interval(secs => ?) WHERE {_FENCE}",
                    (self.ttl, lease.run, lease.entry, self.owner, lease.epoch))
                if moved.rowcount != 1:
                    lost.add(lease)
        return lost

    def finish(self, lease: Lease, outcome: EntryApplied) -> None:
        """Record the entry's outcome, if this worker still holds its lease (else LeaseLost)."""
        with self.journal._writing(durable=False) as conn:  # outcomes are safe to redo (applier.py)
            # The entry's row first, as a claim locks it (FOR UPDATE) before the lease row: the
            # same order on both sides, so a takeover racing this finish cannot deadlock it.
            conn.execute("SELECT 1 FROM entries WHERE run = ? AND entry = ? FOR UPDATE",
                         (lease.run, lease.entry))
            gone = conn.execute(f"DELETE FROM leases l WHERE {_FENCE} RETURNING 1",
                                (lease.run, lease.entry, self.owner, lease.epoch)).fetchone()
            if gone is None:
                raise LeaseLost(f"run {lease.run} entry {lease.entry}: lease taken over by another worker")
            self.journal._append_in(conn, [outcome])

    def busy(self, run: str) -> bool:
        """Whether a live lease of the run exists (read without the append lock: finish_run,
        which takes it, is then not worth trying)."""
        with self._session() as conn:
            return bool(_count(conn, "SELECT count(*) FROM leases l WHERE l.run = ? AND " + _LIVE, run))

    def start_applying(self, run: str, at: str) -> None:
        """ApplyStarted, once, by whichever worker first applies the run."""
        with self.journal._writing() as conn:
            row = conn.execute("SELECT status, attempts FROM runs WHERE run = ?", (run,)).fetchone()
            if row is not None and row[0] in ("planning", "planned"):
                self.journal._append_in(conn, [ApplyStarted(run=run, at=at, attempt=row[1] + 1)])

    def finish_run(self, run: str, depends: dict[str, list[str]], at: str) -> FinishStatus | None:
        """End a sealed run nothing is left to do in (RunFinished, once): completed, or failed
        when entries failed or wait on failed ones. None while anything can still be applied."""
        with self.journal._writing() as conn:
            row = conn.execute("SELECT status, sealed_at FROM runs WHERE run = ?", (run,)).fetchone()
            if row is None or row[1] is None or row[0] not in ("planning", "planned", "applying"):
                return None
            # One statement, one snapshot: claims go on meanwhile (they take no append lock), and
            # an entry claimed between two statements would be neither ready nor seen leased.
            if conn.execute(f"SELECT EXISTS (SELECT 1 FROM leases l WHERE l.run = ? AND {_LIVE})"
                            f" OR EXISTS ({_READY})",
                            (run, run, msgspec.json.encode(depends).decode())).fetchone()[0]:
                return None
            failed = _count(conn, "SELECT count(*) FROM entries WHERE run = ? AND state = 'failed'", run)
            # (a failed entry left here failed after the latest ApplyStarted: not claimable)
            waiting = _count(conn, "SELECT count(*) FROM entries WHERE run = ? AND state = 'pending'", run)
            status: FinishStatus = "failed" if failed or waiting else "completed"
            error = (f"{failed} entries failed; {waiting} wait on them (resume retries)"
                     if status == "failed" else None)
            self.journal._append_in(conn, [RunFinished(run=run, at=at, status=status, error=error)])
            conn.execute("DELETE FROM leases WHERE run = ?", (run,))
        return status

    def close(self) -> None:
        with self._lock:
            self._conn.conn.close()
            self._listener.close()


def _count(conn: PgSql, sql: str, *params: Any) -> int:
    return int(conn.execute(sql, params).fetchone()[0])
