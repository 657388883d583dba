"""The run request: what one copy or transfer is asked to move, stated once.

`RunSpec` holds what a person states (CLI options, a `[jobs.NAME]` section: JobConfig extends
it with a schedule); `RunRequest` adds what the process decides (an incremental job's mark,
the job's name, whether a daemon applies it). Both the CLI and the daemon build a RunRequest
with `RunRequest.build(...)`, which validates every field with the same rules, so a request
the CLI accepts is one a job accepts. The journal keeps `options()` in RunStarted so a run
cut off while planning can be planned again (`from_options`); a process that holds the
request never rebuilds it from there.
"""
from __future__ import annotations

from typing import Any, Literal

import msgspec

from .errors import InputError

Kind = Literal["copy", "transfer", "clone", "move", "export", "import", "restore", "revert",
               "delete"]
# Records are taken one entity after the other (not as a tree below a root): an archive's
# every record, a backup's, a label's, a restore's deletes, a revert's.
BY_ENTITY: tuple[Kind, ...] = ("import", "restore", "revert", "delete")
Conflicts = Literal["error", "skip", "update"]


class RunSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Kind
    source: str
    target: str
    entity: str | None = None  # the root; transfer may leave it to the schema
    filters: tuple[str, ...] = ()  # K:OP:V, AND-ed
    limit: int | None = None  # root records at most
    clear: tuple[str, ...] = ()  # fields nulled on the copied roots
    copy_files: bool = False
    target_bucket: str | None = None  # gs:// copies go to this bucket
    update: bool = False  # patch existing roots whose fields differ
    # Incremental selection (daemon jobs): roots in (column, key) order past the job's mark;
    # rows with a NULL column are left out.
    incremental: str | None = None
    # clone: the children cloned with the roots (default: the root's `children`), and
    # FIELD=VALUE set on the cloned roots
    include: tuple[str, ...] = ()
    set: tuple[str, ...] = ()
    # move: SCOPE_ENTITY:KEY or SCOPE_ENTITY:new, the scope the selection moves to
    to: str | None = None
    # export: every record of every entity (--all, and backup), the records imports labelled
    # so wrote and that are still there (--label), new keys for legacy integer ids, and the
    # exported records deleted from the source once the archive is verified
    all_records: bool = False
    labels: tuple[str, ...] = ()
    new_ids: bool = False
    delete_exported: bool = False
    # import (and restore): the label journaled with the run; what to do with a record the
    # target holds with other content; a resolver naming a built-in or MODULE:CLASS
    label: str | None = None
    on_conflict: Conflicts = "error"
    resolver: str | None = None
    # revert: the run whose effects are undone; delete: the export run whose records go
    reverts: str | None = None
    # applied by `syncd worker` processes sharing a Postgres journal, not by this process
    workers: bool = False

    @property
    def by_entity(self) -> bool:
        """Whether records are taken entity by entity (see BY_ENTITY), not as a tree."""
        return self.kind in BY_ENTITY or bool(self.all_records or self.labels)

    def problems(self) -> dict[str, str]:
        """Field → what is wrong with it, for every rule that is not about types."""
        clone, move, export = self.kind == "clone", self.kind == "move", self.kind == "export"
        in_place = ("clone", "move", "revert", "delete")
        files = ("transfer", "export", "import", "restore")
        rules = {
            "target": "the same environment as source"
            if self.target == self.source and self.kind not in in_place else None,
            "to": "move needs --to SCOPE_ENTITY:KEY|new" if move and not self.to
            else "only move has --to" if self.to and not move else None,
            "entity": f"required for {self.kind}" if self.kind in ("copy", "clone", "move") and not self.entity
            else "an --all or --label export takes every entity" if self.entity and (self.all_records or self.labels)
            else None,
            "all_records": "--all and --label exclude each other" if self.all_records and self.labels
            else "only export takes --all" if self.all_records and not export else None,
            "labels": "only export selects by --label" if self.labels and not export else None,
            "new_ids": "only export gives new ids" if self.new_ids and not export else None,
            "delete_exported": "only export deletes what it exported"
            if self.delete_exported and not export else None,
            "on_conflict": "only import has --on-conflict"
            if self.on_conflict != "error" and self.kind != "import" else None,
            "resolver": "only import takes a resolver" if self.resolver and self.kind != "import"
            else "--resolver decides conflicts itself: leave --on-conflict out"
            if self.resolver and self.on_conflict != "error" else None,
            "include": "only clone includes children" if self.include and not clone else None,
            "set": "only clone and move set fields" if self.set and not (clone or move) else None,
            "update": f"{self.kind} does not take --update" if self.update and (clone or move) else None,
            "workers": "only copy and transfer are applied by workers"
            if self.workers and self.kind not in ("copy", "transfer") else None,
            "limit": "must be 1 or more" if self.limit is not None and self.limit < 1 else None,
            "copy_files": "only transfer, export, import and restore copy files"
            if self.copy_files and self.kind not in files else None,
            "target_bucket": "needs copy_files (--copy-files): without it no file is copied"
            if self.target_bucket is not None and not self.copy_files else None,
        }
        return {name: problem for name, problem in rules.items() if problem}


class RunRequest(RunSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # (value, key) of the last root an earlier run of the job selected: start strictly after
    after: tuple[Any, Any] | None = None
    job: str | None = None  # the daemon job this run belongs to
    queued: bool = False  # planned for a running daemon to apply (`--plan-only --queue`)

    @classmethod
    def build(cls, **fields: Any) -> RunRequest:
        """Typed and checked: an InputError names the CLI option (`--limit: …`)."""
        try:
            request = msgspec.convert(fields, cls)
        except msgspec.ValidationError as exc:
            raise InputError(_cli_message(str(exc))) from None
        for name, problem in request.problems().items():
            raise InputError(f"{option_name(name)}: {problem}")
        return request

    @classmethod
    def from_spec(cls, spec: RunSpec, **extra: Any) -> RunRequest:
        """A job's request: its spec (already checked with the config) plus what the process
        decides."""
        fields = {name: getattr(spec, name) for name in RunSpec.__struct_fields__}
        return cls(**fields, **extra)

    def options(self) -> dict[str, Any]:
        """What RunStarted records: enough to plan the run again, never a secret."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RunRequest:
        known = {k: v for k, v in options.items() if k in cls.__struct_fields__}
        return msgspec.convert(known, cls)


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _cli_message(text: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.limit`": name the option instead
    body, _, where = text.partition(" - at `$.")
    return f"{option_name(where.rstrip('`').split('[')[0])}: {body}" if where else text
