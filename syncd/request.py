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

Kind = Literal["copy", "transfer", "clone", "move"]


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

    def problems(self) -> dict[str, str]:
        """Field → what is wrong with it, for every rule that is not about types."""
        clone, move = self.kind == "clone", self.kind == "move"
        rules = {
            "target": "the same environment as source"
            if self.target == self.source and not (clone or move) else None,
            "to": "move needs --to SCOPE_ENTITY:KEY|new" if move and not self.to
            else "only move has --to" if self.to and not move else None,
            "entity": f"required for {self.kind}" if self.kind != "transfer" and not self.entity else None,
            "include": "only clone includes children" if self.include and not clone else None,
            "set": "only clone and move set fields" if self.set and not (clone or move) else None,
            "update": f"{self.kind} does not take --update" if self.update and (clone or move) else None,
            "limit": "must be 1 or more" if self.limit is not None and self.limit < 1 else None,
            "copy_files": "only transfer copies files" if self.copy_files and self.kind != "transfer" else None,
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
