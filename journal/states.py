"""The journal's vocabulary, defined once: what a run, an entry and a record can be.

Literal types (as dlt's `TJobState`), so mypy checks every comparison and msgspec refuses an
event carrying a value outside them. The tuples beside each type list its values for code that
iterates (metrics, projections, SQL `IN` lists) and are checked against the types below.
"""
from __future__ import annotations

from typing import Final, Literal, get_args

# A run's lifecycle, as the runs projection shows it:
#   planning → planned (sealed) → applying → completed | failed | interrupted
# failed and interrupted runs can be resumed (→ applying again); any run that is not
# completed can be cancelled, after which nothing of it is planned or applied.
RunStatus = Literal["planning", "planned", "applying", "completed", "failed", "interrupted",
                    "cancelled"]
# What RunFinished can say: how an attempt (or a cut-off planning) ended.
FinishStatus = Literal["completed", "failed", "interrupted"]
# A planned entry: pending until an applier records its outcome; failed ones are retried
# by resume, done ones never again.
EntryState = Literal["pending", "done", "failed"]
# What happened to one record (or file) of an entry.
Outcome = Literal["created", "skipped", "updated", "failed", "deleted"]
# What an entry does: create/update/delete records of an entity, copy files, or record a
# decision about keys (rows: [source key, target key]): records matched by natural key to the
# target's ("match"), or the new keys of cloned records ("clone"). Decisions write nothing to
# the target, so they are applied as skipped.
Op = Literal["create", "update", "delete", "copy", "match", "clone"]

RUN_STATUSES: Final[tuple[RunStatus, ...]] = get_args(RunStatus)
FINISH_STATUSES: Final[tuple[FinishStatus, ...]] = get_args(FinishStatus)
ENTRY_STATES: Final[tuple[EntryState, ...]] = get_args(EntryState)
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
OPS: Final[tuple[Op, ...]] = get_args(Op)

# Ops whose entries journal a decision and write nothing.
DECISIONS: Final[tuple[Op, ...]] = ("match", "clone")
# Entries an applier still has to work on (resume reads exactly these: never "done").
TODO_STATES: Final[tuple[EntryState, ...]] = ("pending", "failed")
# Runs an applier may be working on now (a worker claims their entries).
ACTIVE: Final[tuple[RunStatus, ...]] = ("planning", "planned", "applying")
# Runs that have not reached their end.
UNFINISHED: Final[tuple[RunStatus, ...]] = ("planning", "planned", "applying", "interrupted", "failed")
