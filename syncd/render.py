"""Tables and JSON for the CLI. Tables go to stdout; progress and messages go to stderr."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Collection, Iterable

from rich import box
from rich.console import Console
from rich.table import Table

from .plan import APPLIED_KEYS, PlanSummary, RecordAction

if TYPE_CHECKING:  # the schema module is not needed to print a table
    from .schema import Schema

def _console(stderr: bool) -> Console:
    # Off a terminal (pipes, CI logs) rich would assume 80 columns and squash the tables;
    # COLUMNS, when set, is the width asked for, on a terminal or not.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, width=width)


out = _console(False)
err = _console(True)



def plan_table(summary: PlanSummary, title: str, schema: Schema | None, update: bool) -> Table:
    table = Table(title=title, box=box.HEAVY_HEAD, title_justify="left")
    dangling = any(c.dangling for c in summary.entities.values())
    clones = any(c.clone for c in summary.entities.values())
    deletes = any(c.delete for c in summary.entities.values())  # restore, revert
    conflicts = any(c.conflict for c in summary.entities.values())  # import, revert
    headers = ["Entity", "Selected", "Dependencies", "Already in target", "To create"]
    headers += ["To clone"] if clones else []  # new records under new keys (syncd clone)
    headers += ["To update"] if update else []
    headers += ["To delete"] if deletes else []
    headers += ["Conflicts"] if conflicts else []
    headers += ["Dangling references"] if dangling else []  # listed with -v
    for h in headers:
        table.add_column(h, justify="left" if h == "Entity" else "right")
    for name, c in summary.entities.items():
        label = name
        if schema and name in schema.entities and schema.entity(name).natural_key:
            label += f" (by {', '.join(schema.entity(name).natural_key)})"
        cells = [label, c.selected, c.dependencies, c.existing, c.create]
        cells += [c.clone] if clones else []
        cells += [c.update] if update else []
        cells += [c.delete] if deletes else []
        cells += [c.conflict] if conflicts else []
        cells += [c.dangling] if dangling else []
        table.add_row(*map(str, cells))
    return table


def move_table(move: dict[str, Any]) -> Table:
    """Per entity with a scope: its records in the old and the new scope, before and after."""
    old, new = f"{move['scope']} {move['from']}", f"{move['scope']} {move['to']}" + (" (new)" if move["new"] else "")
    table = Table(title=f"Move: {old} → {new}", box=box.HEAVY_HEAD, title_justify="left")
    for h in ("Entity", f"In {old}: before", "after", f"In {new}: before", "after", "Moved",
              "Cloned", "Reassigned"):
        table.add_column(h, justify="left" if h == "Entity" else "right")
    for name, c in move["entities"].items():
        table.add_row(name, *map(str, (c["old_before"], c["old_after"], c["new_before"], c["new_after"],
                                       c["moved"], c["cloned"], c["reassigned"])))
    return table


def files_line(summary: PlanSummary) -> str:
    f = summary.files
    line = f"Files to copy: {f.copy} (already in target: {f.existing})"
    return line + (f"; {f.conflict} differ in the target and are left alone (--update replaces them)"
                   if f.conflict else "")


def actions_tables(actions: Iterable[RecordAction]) -> list[Table]:
    by_entity: dict[tuple[str, str], list[RecordAction]] = {}
    for a in actions:  # a user table may be named "files": records and files stay apart
        by_entity.setdefault((a.kind, a.entity), []).append(a)
    tables = []
    for (kind, entity), rows in by_entity.items():
        table = Table(title=entity, box=box.SIMPLE, title_justify="left")
        for h in ("Key" if kind == "record" else "Source", "Action", "Detail"):
            table.add_column(h)
        for a in rows:
            table.add_row(str(a.key), a.action, a.note)
        tables.append(table)
    return tables


def applied_table(applied: dict[str, Any]) -> Table:
    table = Table(title="Applied", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("Entity")
    for k in APPLIED_KEYS:
        table.add_column(k.capitalize(), justify="right")
    for name, c in applied["entities"].items():
        table.add_row(name, *(str(c[k]) for k in APPLIED_KEYS))
    f = applied["files"]
    if any(f.values()):
        table.add_row("files", str(f["copied"]), "-", "-", str(f["skipped"]), str(f["failed"]))
    return table


def short_time(iso: str | None) -> str | None:
    """2026-11-22T00:44:22.363312Z → 2026-11-22 00:44:22 (tables only; JSON keeps the full time)."""
    return iso[:19].replace("T", " ") if iso else iso


# Values are folded at word boundaries while their words are at most this long.
WORD = 10


def simple_table(title: str | None, headers: list[str], rows: Iterable[Iterable[Any]],
                 whole: Collection[str] = ("Run",), width: int | None = None) -> Table:
    """A plain table for a console `width` columns wide (stdout's by default). The `whole`
    columns' values are never narrowed (a run id cut to `2026…` names nothing); when the
    table does not fit, the others, and long headers, fold onto more lines instead of being
    cut with an ellipsis: nothing shown is lost."""
    # No padding: the box's blank column separator is the gap (two spaces would cost a run
    # table ten columns of an 80-column terminal).
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", padding=0, show_edge=False)
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    widths = _fit(headers, cells, whole, (width or out.width) - (len(headers) - 1))
    for h, w in zip(headers, widths):
        table.add_column(h, overflow="fold", width=w)
    for row in cells:
        table.add_row(*row)
    return table


def _fit(headers: list[str], cells: list[list[str]], whole: Collection[str],
         room: int) -> list[int | None]:
    """Column widths that fit `room`, or None each when the table fits as it is. rich's own
    shrinking cuts every column evenly, whole ones too; this starts from each column's
    narrowest (whole values; a word, at most WORD) and hands out what is left in order of need."""
    natural = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    if sum(natural) <= room:
        return [None] * len(headers)
    least = [max((len(r[i]) for r in cells), default=0) if h in whole
             else min(WORD, max((len(w) for r in cells for w in [*r[i].split(), *h.split()]), default=1))
             for i, h in enumerate(headers)]
    widths = list(least)
    spare = room - sum(widths)
    for i in sorted(range(len(headers)), key=lambda i: natural[i] - least[i]):
        extra = max(0, min(spare, natural[i] - widths[i]))
        widths[i] += extra
        spare -= extra
    return list(widths)
