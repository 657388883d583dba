"""Conflict resolvers: what an import does with a record the target holds with other content.

A resolver is any object with `resolve(entity, current, incoming)`: `current` is the target's
record and `incoming` the archive's (after references are remapped), both `{column: value}`;
it returns the fields to write (`{column: value}`, only those that differ are written) or
None to keep the target's record. `--resolver MODULE:CLASS` names a class (built with no
arguments); these built-ins (Mephisto's porter strategies) need no code:

    keep-target      the target's record stays (as --on-conflict skip)
    take-archive     the archive's fields win (as --on-conflict update)
    min:FIELD        the record whose FIELD is smaller wins; max:FIELD, the larger
    earliest:FIELD   the record whose FIELD is the earlier time wins; latest:FIELD, the later

A record whose FIELD is missing or NULL on either side keeps the target's (nothing to compare).
"""
from __future__ import annotations

import datetime as dt
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Protocol

from ..errors import InputError

Fields = dict[str, Any]


class Resolver(Protocol):
    def resolve(self, entity: str, current: Fields, incoming: Fields) -> Fields | None: ...


class KeepTarget:
    def resolve(self, entity: str, current: Fields, incoming: Fields) -> Fields | None:
        return None


class TakeArchive:
    def resolve(self, entity: str, current: Fields, incoming: Fields) -> Fields | None:
        return incoming


class ByField:
    """The record whose `field` wins by `better(incoming, current)` is taken whole."""

    def __init__(self, field: str, better: Callable[[Any, Any], bool], parse: Callable[[Any], Any]) -> None:
        self.field, self.better, self.parse = field, better, parse

    def resolve(self, entity: str, current: Fields, incoming: Fields) -> Fields | None:
        a, b = incoming.get(self.field), current.get(self.field)
        if a is None or b is None:
            return None
        return incoming if self.better(self.parse(a), self.parse(b)) else None


def _instant(value: Any) -> Any:
    """ISO-8601 text as an aware datetime (no offset: UTC), so "+01:00" and "Z" compare right."""
    if not isinstance(value, str):
        return value
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _same(value: Any) -> Any:
    return value


_BY_FIELD: dict[str, tuple[Callable[[Any, Any], bool], Callable[[Any], Any]]] = {
    "min": (lambda a, b: a < b, _same),
    "max": (lambda a, b: a > b, _same),
    "earliest": (lambda a, b: a < b, _instant),
    "latest": (lambda a, b: a > b, _instant),
}
BUILT_IN = ("keep-target", "take-archive", *(f"{k}:FIELD" for k in _BY_FIELD))


def load_resolver(spec: str, base_dir: str | None = None) -> Resolver:
    """A built-in by name, or MODULE:CLASS imported from the working folder, the config's
    folder or sys.path. Any problem is an InputError naming the option."""
    if spec == "keep-target":
        return KeepTarget()
    if spec == "take-archive":
        return TakeArchive()
    name, _, rest = spec.partition(":")
    if name in _BY_FIELD:
        if not rest:
            raise InputError(f"--resolver {spec}: name the field ({name}:FIELD)")
        return ByField(rest, *_BY_FIELD[name])
    if not rest:
        raise InputError(f"--resolver {spec}: not a built-in ({', '.join(BUILT_IN)}) nor MODULE:CLASS")
    return _imported(spec, name, rest, base_dir)


def _imported(spec: str, module: str, cls: str, base_dir: str | None) -> Resolver:
    for folder in (str(Path.cwd()), base_dir):
        if folder and folder not in sys.path:
            sys.path.append(folder)
    try:
        found = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise InputError(f"--resolver {spec}: cannot import module {module!r} ({exc})") from None
    except AttributeError:
        raise InputError(f"--resolver {spec}: module {module!r} has no {cls!r}") from None
    resolver = found() if isinstance(found, type) else found
    if not callable(getattr(resolver, "resolve", None)):
        raise InputError(f"--resolver {spec}: {cls} has no resolve(entity, current, incoming) method")
    return resolver  # type: ignore[no-any-return]
