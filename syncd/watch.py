"""Watching another process apply a run: each entry reported once, when its first outcome is
journaled. Used while an applier process (syncd/follower.py) or `syncd worker` processes
apply a sealed run. Each look reads only the events appended since the last one, so it costs
what changed, not the size of the run."""
from __future__ import annotations

from typing import Callable

from journal import EntryApplied, EntryRow, Journal


class OutcomeWatch:
    def __init__(self, journal: Journal, run_id: str, on_entry: Callable[[str, int], None]) -> None:
        self.journal = journal
        self.run_id = run_id
        self.on_entry = on_entry
        self.last = journal.last_seq()  # before the entries: no outcome falls between the two
        self.entries = {row.entry: row for row in journal.entries(run_id)}
        self.seen: set[int] = set()
        for row in self.entries.values():
            if row.state != "pending":
                self._report(row)

    def look(self) -> None:
        """Report the entries whose first outcome was appended since the last look."""
        for recorded in self.journal.read(after=self.last, run=self.run_id):
            self.last, event = recorded.seq, recorded.event
            if isinstance(event, EntryApplied) and event.entry in self.entries:
                self._report(self.entries[event.entry])

    def _report(self, row: EntryRow) -> None:
        if row.entry not in self.seen:
            self.seen.add(row.entry)
            if row.op != "copy":  # files are not records
                self.on_entry(row.entity, row.records)
