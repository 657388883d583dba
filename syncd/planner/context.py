"""What every planning step reads: the run's request, stores, schema and transforms.

Clone, move and import planners (later issues) build a PlanContext of their own and reuse
the steps: selection, closure, diff, files, emit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from journal import Journal

from .. import blobs
from ..filters import Filter
from ..plan import Checkpoint, PlannedEntry
from ..request import RunRequest
from ..schema import Entity, Schema
from ..stores.base import RecordStore
from ..transforms import Transformer

# Root records per group: bounds memory; a checkpoint may follow each group. SYNCD_CHUNK_ROOTS
# overrides it, a test/tuning knob (tests set it small to make many checkpoints of a small world).
CHUNK = int(os.environ.get("SYNCD_CHUNK_ROOTS") or 4000)
BATCH = 20000  # rows per entry: one target transaction each (fewer commits, faster)


class PlanSink(Protocol):
    """Where entries go: the journal (JournalSink) or nowhere (a dry run's NullSink)."""

    async def add(self, entry: PlannedEntry) -> None: ...

    async def checkpoint(self, checkpoint: Checkpoint) -> None:
        """A point the plan may be sealed at and resumed from (between two groups of roots)."""


@dataclass
class PlanContext:
    request: RunRequest
    source: RecordStore
    target: RecordStore
    schema: Schema
    root: Entity
    filters: tuple[Filter, ...]
    tree: tuple[str, ...]  # (root,) for copy; root + children for transfer
    transformer: Transformer
    file_workers: int = blobs.DEFAULT_FILE_WORKERS
    target_schema: Schema | None = None  # None in unit tests: rows are then hashed exactly
    assign: dict[str, Any] = field(default_factory=dict)  # clone: typed --set values for the roots
    # The journal, for planners that read earlier runs (revert, export --label, the deletes
    # of export --delete-exported); None for the others
    journal: Journal | None = None
    # Where a file a record points at is read from when that is not its URI (an archive's
    # files, staged as local files): record URI → readable URI
    blob_source: Callable[[str], str] | None = None

    def target_json_columns(self, entity: str) -> frozenset[str]:
        """The target's JSON columns of `entity`, hashed as canonical JSON (payload.row_hash)."""
        if self.target_schema is None or entity not in self.target_schema.entities:
            return frozenset()
        return self.target_schema.entity(entity).json_columns


def involved_entities(schema: Schema, tree: Sequence[str]) -> list[str]:
    """The tree and every entity it can reach through references, in schema order."""
    seen, todo = set(tree), list(tree)
    while todo:
        for parent in schema.parents(todo.pop()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return [name for name in schema.order if name in seen]
