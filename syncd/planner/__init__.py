"""Planning a run: reads the source and the target, writes entries to a sink, never a target.

Steps, one module each, each with a clear input and output so clone, move and import
planners can reuse them:

    selection  roots in keyset pages, and each page's children down the tree
    closure    every parent the group needs that no earlier group decided
    diff       against the target: same key, natural-key matches (returned as remaps), updates
    files      blob URIs → target URIs, and whether the target holds those bytes already
    emit       decisions → PlannedEntry batches in dependency order
    planner    the Planner that strings them together, with the counts and the `-v` notes
"""
from __future__ import annotations

from .context import BATCH, CHUNK, PlanContext, PlanSink, involved_entities
from .diff import changed_fields
from .emit import order_self_references
from .planner import Planner

__all__ = ["BATCH", "CHUNK", "PlanContext", "PlanSink", "Planner", "changed_fields",
           "involved_entities", "order_self_references"]
