"""Value objects of a plan: the per-entity counts, the planned entries, the `-v` lines.

The request itself is syncd/request.py; states and ops are journal/states.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

from journal import DECISIONS, Op, Outcome

if TYPE_CHECKING:
    from journal import Journal

# The label of file-copy entries in tables and the journal. Entries are told apart by their
# op ("copy"), never by this name: a user table may be called "files" too.
FILES = "files"
APPLIED_KEYS: tuple[Outcome, ...] = ("created", "updated", "deleted", "skipped", "failed")  # display order
# One line of the `-v` listing says what the plan does with a record or file.
Action = Literal["create", "skip", "update", "match", "copy", "conflict", "dangling", "clone",
                 "delete"]


@dataclass
class Checkpoint:
    """A planner's position between two groups of roots (architecture §7): the journal seals
    the entries planned so far with it, and a planner cut off later resumes from it. `known`
    and `remaps` hold only what was decided since the previous checkpoint the planner made."""

    cursor: dict[str, Any]
    summary: dict[str, Any]
    known: dict[str, list[Any]] = field(default_factory=dict)  # entity → parent keys decided
    remaps: dict[str, list[list[Any]]] = field(default_factory=dict)  # entity → [source, target]
    more: bool = True  # False after the last group: the seal follows, no checkpoint is needed

    def merge(self, later: Checkpoint) -> Checkpoint:
        """This checkpoint followed by a later one: the later position, both sets of decisions."""
        known = {k: [*self.known.get(k, ()), *later.known.get(k, ())] for k in {*self.known, *later.known}}
        remaps = {k: [*self.remaps.get(k, ()), *later.remaps.get(k, ())] for k in {*self.remaps, *later.remaps}}
        return Checkpoint(later.cursor, later.summary, known, remaps, later.more)


@dataclass
class EntityCounts:
    selected: int = 0
    dependencies: int = 0
    existing: int = 0
    create: int = 0
    update: int = 0
    # references to keys of this entity that the source does not have: copied as they are
    dangling: int = 0
    clone: int = 0  # records created as clones, under new keys (syncd clone)
    delete: int = 0  # records removed (restore, export --delete-exported, revert of a create)
    # in the target with other content: import's --on-conflict decides; revert leaves them
    conflict: int = 0


@dataclass
class FileCounts:
    copy: int = 0
    existing: int = 0
    conflict: int = 0  # target has other bytes under that name; replaced only with --update


@dataclass
class PlanSummary:
    entities: dict[str, EntityCounts] = field(default_factory=dict)
    files: FileCounts = field(default_factory=FileCounts)
    # Incremental runs: {"column", "value", "key"} of the last root selected (the highest in
    # (column, key) order), or None when nothing was selected. The job's mark moves here
    # once the run completes.
    mark: dict[str, Any] | None = None
    # syncd move: the scope, counts per entity before and after, and the checks the applier
    # runs inside its one transaction before it commits (planner/move.py)
    move: dict[str, Any] | None = None

    def existing(self) -> int:
        """Records and files the plan found already in the target: no entry writes them."""
        return sum(c.existing for c in self.entities.values()) + self.files.existing

    def entity(self, name: str) -> EntityCounts:
        return self.entities.setdefault(name, EntityCounts())

    def to_json(self) -> dict[str, Any]:
        # "order" keeps dependency order through the journal's canonical (key-sorted) encoding.
        data: dict[str, Any] = {"entities": {k: asdict(v) for k, v in self.entities.items()},
                "files": asdict(self.files), "order": list(self.entities)}
        data |= {"mark": self.mark} if self.mark is not None else {}
        return data | ({"move": self.move} if self.move is not None else {})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PlanSummary":
        entities = data.get("entities", {})
        order = data.get("order") or list(entities)
        return cls({k: EntityCounts(**entities[k]) for k in order}, FileCounts(**data.get("files", {})),
                   data.get("mark"), data.get("move"))


@dataclass
class PlannedEntry:
    entity: str
    op: Op
    columns: list[str]
    keys: list[Any]
    rows: Sequence[Sequence[Any]]
    json_at: tuple[int, ...] = ()  # positions of the target's JSON columns: hashed canonically
    # update entries: the target's JSON columns, whose values in `fields` and `before` are
    # hashed canonically (jsonb's text of a before-image is not SQLite's)
    json_columns: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RecordAction:
    """One line of the `-v` listing."""

    entity: str
    key: Any
    action: Action
    note: str = ""
    kind: Literal["record", "file"] = "record"


def applied_counts(journal: Journal, run_id: str) -> dict[str, Any]:
    """What a run's entries applied, per entity and for files, from their latest outcomes."""
    entities: dict[str, dict[str, int]] = {}
    files = {"copied": 0, "skipped": 0, "failed": 0}
    for e in journal.entries(run_id):
        if e.op == "copy":  # told apart by op: a user table may be named "files"
            files["copied"] += e.created
            files["skipped"] += e.skipped
            files["failed"] += e.failed
            continue
        if e.op in DECISIONS:  # matches and clone keys write nothing
            continue
        c = entities.setdefault(e.entity, dict.fromkeys(APPLIED_KEYS, 0))
        for k in APPLIED_KEYS:
            c[k] += getattr(e, k)
    return {"entities": entities, "files": files}
