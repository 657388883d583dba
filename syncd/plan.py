"""Value objects of a plan: the request, the per-entity counts, the planned entries."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

FILES = "files"  # the entity name of blob-copy entries
APPLIED_KEYS = ("created", "updated", "skipped", "failed")  # per-entity outcome counts


@dataclass(frozen=True)
class PlanRequest:
    kind: str  # copy | transfer
    source: str
    target: str
    entity: str | None = None
    filters: tuple[str, ...] = ()
    limit: int | None = None
    clear: tuple[str, ...] = ()
    copy_files: bool = False
    target_bucket: str | None = None
    update: bool = False
    # Incremental selection (daemon jobs): roots in (incremental, key) order, strictly after
    # `after` = (value, key), the job's high-water mark; rows with a NULL column are left out.
    incremental: str | None = None
    after: tuple[Any, Any] | None = None
    job: str | None = None  # the daemon job this run belongs to
    queued: bool = False  # planned for a running daemon to apply (`--plan-only --queue`)

    def options(self) -> dict[str, Any]:
        """What RunStarted records: enough to plan the run again, never a secret."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "PlanRequest":
        known: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                 for k, v in options.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class EntityCounts:
    selected: int = 0
    dependencies: int = 0
    existing: int = 0
    create: int = 0
    update: int = 0


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

    def entity(self, name: str) -> EntityCounts:
        return self.entities.setdefault(name, EntityCounts())

    def to_json(self) -> dict[str, Any]:
        # "order" keeps dependency order through the journal's canonical (key-sorted) encoding.
        data: dict[str, Any] = {"entities": {k: asdict(v) for k, v in self.entities.items()},
                "files": asdict(self.files), "order": list(self.entities)}
        return data | ({"mark": self.mark} if self.mark is not None else {})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PlanSummary":
        entities = data.get("entities", {})
        order = data.get("order") or list(entities)
        return cls({k: EntityCounts(**entities[k]) for k in order}, FileCounts(**data.get("files", {})),
                   data.get("mark"))


@dataclass
class PlannedEntry:
    entity: str
    op: str  # create | update | copy
    columns: list[str]
    keys: list[Any]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class RecordAction:
    """One line of the `-v` listing."""

    entity: str
    key: Any
    action: str  # create | skip | update | match | copy | conflict
    note: str = ""
