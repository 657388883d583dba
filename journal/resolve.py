"""Turning what a user typed into a run id: git-style unique prefixes."""
from __future__ import annotations

from collections.abc import Callable

from .errors import AmbiguousRun, UnknownRun

# How many candidates an ambiguity message lists; enough to see why, short enough for one line.
SHOWN = 5


def resolve_run(text: str, with_prefix: Callable[[str, int], list[str]]) -> str:
    """`text` itself if it is a run id, else the one run id it is a prefix of.

    `with_prefix(prefix, limit)` returns up to `limit` run ids starting with `prefix`.
    """
    if not text:
        raise UnknownRun("no run id given")
    # An exact id sorts before every longer id it prefixes, so it is always among these.
    matches = with_prefix(text, SHOWN + 1)
    if text in matches:
        return text
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownRun(f"no run matches {text!r}")
    listed = ", ".join(matches[:SHOWN]) + (", ..." if len(matches) > SHOWN else "")
    raise AmbiguousRun(f"run prefix {text!r} is ambiguous: {listed}")
