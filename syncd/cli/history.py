"""Reading the journal: runs, show, audit, log, journal head/verify/rebuild.

`render` (and rich with it) is imported only where a table or a coloured line is printed:
scripts asking for --json, and `log`, start without it (architecture §6).
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from journal import DECISIONS, RUN_STATUSES, Head, HistoryRow, Journal, RunRow, RunStatus, parse_head
from journal.events import EntryPlanned

from .. import clock, journals
from ..payload import unpack_rows
from ..plan import PlanSummary, applied_counts
from .app import EXIT_FAILED, cli, config_of, existing_journal


@cli.command()
@click.option("--status", "statuses", multiple=True, type=click.Choice(RUN_STATUSES),
              help="Only runs in this status (repeatable)")
@click.option("--limit", type=click.IntRange(min=1), help="At most N runs, the newest")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs(ctx: click.Context, statuses: tuple[RunStatus, ...], limit: int | None, as_json: bool) -> None:
    """Runs, newest first: id, kind, source → target, status, record counts, start time."""
    config = config_of(ctx, required=False)
    journal = journals.journal_for(config) if journals.journal_exists(config) else None
    rows = journal.runs(statuses=statuses or None, limit=limit) if journal else []
    if as_json:
        # A run applied by `syncd worker` processes says which applied how many entries.
        print(json.dumps([_run_json(r) | ({"workers": journal.workers(r.run)}
                                          if journal and r.options.get("workers") else {}) for r in rows]))
        return
    from .. import render
    from ..render import out

    # One column for the four counts and no finish time: the table fits 80 columns with the
    # run ids whole (show and --json have the rest).
    out.print(render.simple_table("Runs", ["Run", "Kind", "Source → target", "Status", COUNTS,
                                           "Started"], [
        (r.run, r.kind, f"{r.source} → {r.target}", r.status,
         f"{r.counts['created']} / {r.counts['updated']} / {_skipped(r)} / {r.counts['failed']}",
         render.short_time(r.started_at)) for r in rows], whole=("Run", COUNTS)))


COUNTS = "Created / Updated / Skipped / Failed"


def _existing(r: RunRow) -> int:
    return PlanSummary.from_json(r.summary).existing() if r.summary else 0


def _skipped(r: RunRow) -> int:
    """What a person means by skipped: records and files the plan found already in the target,
    plus records an entry skipped when applied (already written by an earlier try). Applied
    matches are among the former."""
    return _existing(r) + r.counts["skipped"] - r.matched


def _run_json(r: RunRow) -> dict[str, Any]:
    """A run in every command's JSON: `entry_count` is a number here; `show --json` adds
    `entries`, the list. `counts` are the entries' outcomes; `already_in_target` the plan's."""
    return {"run_id": r.run, "kind": r.kind, "source": r.source, "target": r.target,
            "status": r.status, "error": r.error, "options": r.options, "entry_count": r.entries,
            "counts": r.counts, "matched": r.matched, "already_in_target": _existing(r),
            "attempts": r.attempts, "started_at": r.started_at, "sealed_at": r.sealed_at,
            "finished_at": r.finished_at} | ({"archive": r.summary["archive"]} if "archive" in r.summary else {})


@cli.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
@click.option("-v", "--verbose", is_flag=True, help="One line per record")
@click.pass_context
def show(ctx: click.Context, run: str, as_json: bool, verbose: bool) -> None:
    """The plan of RUN and its progress per entity (per record with -v)."""
    journal = existing_journal(ctx)
    run_id = journal.resolve_run(run)
    row = journal.run(run_id)
    assert row is not None
    entries = list(journal.entries(run_id))
    records = list(_records(journal, row, entries)) if verbose else None
    if as_json:
        data = _run_json(row) | {"plan": row.summary, "applied": applied_counts(journal, run_id),
                                 "entries": [_entry_json(e) for e in entries],
                                 "workers": journal.workers(run_id)}
        if records is not None:
            data["records"] = [dict(zip(("entity", "key", "op", "outcome", "detail", "hash"), r))
                               for r in records]
        print(json.dumps(data))
        return
    from .. import render
    from ..render import out

    out.print(f"Run {run_id}: {row.kind} {row.source} → {row.target}, {row.status}")
    if workers := journal.workers(run_id):
        out.print("Applied by " + ", ".join(f"{name} ({n} entries)" for name, n in workers.items()))
    out.print(render.plan_table(PlanSummary.from_json(row.summary), "Plan", None,
                                bool(row.options.get("update"))))
    by_workers = any(e.worker for e in entries)  # a run `syncd worker` processes applied
    out.print(render.simple_table("Entries", ["#", "Entity", "Op", "Records", "State", "Created",
                                              "Updated", "Deleted", "Skipped", "Failed", "Error",
                                              *(["Worker"] if by_workers else [])], [
        (e.entry, e.entity, e.op, e.records, e.state, e.created, e.updated, e.deleted, e.skipped,
         e.failed, e.error, *([e.worker] if by_workers else [])) for e in entries]))
    if records is not None:
        out.print(render.simple_table("Records", ["Entity", "Key", "Op", "Outcome", "Detail", "Hash"],
                                      records))


def _entry_json(e: Any) -> dict[str, Any]:
    return {k: getattr(e, k) for k in ("entry", "entity", "op", "records", "state", "created",
                                       "updated", "deleted", "skipped", "failed", "error", "retries",
                                       "worker")}


def _records(journal: Journal, run: RunRow, entries: list[Any]) -> Any:
    unapplied = "cancelled" if run.status == "cancelled" else "pending"
    for e in entries:
        planned: EntryPlanned = journal.planned(run.run, e.entry)
        applied = journal.applied(run.run, e.entry)
        outcomes = applied.outcomes if applied else [unapplied] * len(planned.keys)
        details = ([f"→ {t}" for _, t in unpack_rows(planned.payload)] if planned.op in DECISIONS
                   else [""] * len(planned.keys))
        for key, digest, outcome, detail in zip(planned.keys, planned.hashes, outcomes, details):
            yield (planned.entity, key, planned.op, outcome, detail, digest)


@cli.command()
@click.argument("key")
@click.option("--entity", help="Only this entity")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit(ctx: click.Context, key: str, entity: str | None, as_json: bool) -> None:
    """Every journaled operation on the record KEY, oldest first: by when it was applied, or
    planned if it was not (JSON: "at", and "at_is" says which)."""
    journal = existing_journal(ctx)
    # Ordered by the time shown: when it was applied, or planned while it was not (a run
    # planned first can be applied after a later one).
    rows = sorted(journal.history(key, entity), key=lambda h: h.applied_at or h.planned_at)
    history: list[dict[str, Any]] = [{
        "run_id": h.run, "at": h.applied_at or h.planned_at,
        "at_is": "applied" if h.applied_at else "planned", "planned_at": h.planned_at,
        "applied_at": h.applied_at, "source": h.source, "target": h.target, "op": h.op,
        "outcome": h.outcome, "hash": h.hash, "entity": h.entity, "entry": h.entry, "kind": h.kind,
        "detail": _detail(journal, h, key)} | _archive(journal, h) for h in rows]
    if as_json:
        print(json.dumps({"key": key, "entity": entity or (rows[0].entity if rows else None),
                          "history": history}))
        return
    from .. import render
    from ..render import err, out

    if not rows:
        err.print(f"No journaled operation on {key}.")
        return
    out.print(render.simple_table(f"History of {key}", ["At", "Run", "Entity", "Op", "Outcome",
                                                        "Source → target", "Detail", "Hash"], [
        (render.short_time(h["at"]), h["run_id"], h["entity"], h["op"], h["outcome"],
         f"{h['source']} → {h['target']}", h["detail"] or _archive_note(h), h["hash"]) for h in history]))


def _archive_note(h: dict[str, Any]) -> str | None:
    sha = h.get("archive_sha256")
    return f"into the archive with sha256 {sha}" if sha else None


def _archive(journal: Journal, h: HistoryRow) -> dict[str, Any]:
    """An export's record went into an archive: which one (its sha256), once it is written."""
    if not h.target.startswith("archive:"):
        return {}
    run = journal.run(h.run)
    written = run.summary.get("archive") if run else None
    return {"archive_sha256": written["sha256"] if written else None}


def _detail(journal: Journal, h: HistoryRow, key: str) -> str | None:
    """What the journal adds to a record's line: for a natural-key match, the target's key;
    for a cloned record, its clone's key; for a clone, the record it was cloned from."""
    if h.op in DECISIONS:
        said = "matched {} in the target" if h.op == "match" else "cloned as {}"
        rows = unpack_rows(journal.planned(h.run, h.entry).payload)
        return next((said.format(new) for old, new in rows if str(old) == key), None)
    if h.op == "create" and h.kind == "clone":
        for e in journal.entries(h.run):
            if e.op == "clone" and e.entity == h.entity:
                rows = unpack_rows(journal.planned(h.run, e.entry).payload)
                found = next((old for old, new in rows if str(new) == key), None)
                if found is not None:
                    return f"clone of {found}"
    return None


def _instant_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else clock.parse_instant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@cli.command()
@click.option("--run", "run_text", help="Only this run")
@click.option("--since", callback=_instant_option, metavar="ISO-8601",
              help="Only events at or after this instant (an offset is honoured; without one, UTC;"
                   " a date alone is its midnight UTC)")
@click.option("--json", "as_json", is_flag=True, help="JSON lines")
@click.pass_context
def log(ctx: click.Context, run_text: str | None, since: str | None, as_json: bool) -> None:
    """The journal's events, oldest first."""
    journal = existing_journal(ctx)
    run_id = journal.resolve_run(run_text) if run_text else None
    for rec in journal.read(run=run_id):
        if since and rec.at < since:  # both in the journal's UTC format: text order is time order
            continue
        line = {"seq": rec.seq, "at": rec.at, "run": rec.run, "type": rec.type,
                **_event_brief(rec.event)}
        if as_json:
            print(json.dumps(line))
        else:
            extra = " ".join(f"{k}={v}" for k, v in line.items() if k not in ("seq", "at", "run", "type"))
            click.echo(f"{rec.seq:>6} {rec.at} {rec.run} {rec.type} {extra}")  # plain: no markup


def _event_brief(event: Any) -> dict[str, Any]:
    """The event without its bulky fields (payload, per-record lists)."""
    brief = {}
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if name in ("run", "at", "payload", "hashes", "columns"):
            continue
        if name in ("keys", "outcomes"):
            brief["records"] = len(value)
            if name == "outcomes":
                brief.update({o: value.count(o) for o in sorted(set(value))})
            continue
        brief[name] = value
    return brief


@cli.group("journal")
def journal_group() -> None:
    """Check or rebuild the journal, or print its head."""


@journal_group.command("head")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def journal_head(ctx: click.Context, as_json: bool) -> None:
    """The last event's SEQ:HASH: publish it elsewhere, check it later with verify --expect."""
    head = existing_journal(ctx).head()
    print(json.dumps({"seq": head.seq, "hash": head.hash}) if as_json else head)


def _head_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Head | None:
    try:
        return None if value is None else parse_head(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@journal_group.command("verify")
@click.option("--expect", metavar="SEQ:HASH", callback=_head_option,
              help="A head published earlier (syncd journal head) that the events must still reach")
@click.pass_context
def journal_verify(ctx: click.Context, expect: Head | None) -> None:
    """Exit 1 on a broken chain, events cut off the end, or a projection mismatch."""
    from ..render import err, out

    journal = existing_journal(ctx)
    report = journal.verify(expect)
    if report.ok:
        reached = f", seq {expect.seq} of the expected head reached" if expect else ""
        out.print(f"ok: {report.events} events, hash chain intact and reaching its stored head{reached},"
                  " projections match")
        return
    for problem in report.problems:
        err.print(f"[red]{problem}[/]")
    sys.exit(EXIT_FAILED)


@journal_group.command("rebuild")
@click.pass_context
def journal_rebuild(ctx: click.Context) -> None:
    """Drop the projections and rebuild them from the events."""
    from ..render import out

    journal = existing_journal(ctx)
    journal.rebuild_projections()
    out.print("projections rebuilt")
