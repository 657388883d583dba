"""Adapters chosen in one place: a registry by URL scheme (litestream's
`RegisterReplicaClientFactory`).

Record stores register in `syncd/stores/__init__.py`, blob stores in `syncd/blobs/__init__.py`.
Config validation, `operations`, `serve` and the blob helpers all ask the registry, so a new
backend is one module plus one `register(...)` call; nobody else checks URL prefixes.
"""
from __future__ import annotations

import re
from typing import Generic, TypeVar

from .errors import ConfigError

A = TypeVar("A")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def scheme_of(url: str) -> str:
    """`sqlite:///x.db` → `sqlite`; '' when the text has no scheme."""
    match = _SCHEME.match(url)
    return match[1].lower() if match else ""


class Registry(Generic[A]):
    """Scheme → adapter. `what` names the kind of URL in messages ("record store URL")."""

    def __init__(self, what: str, example: str) -> None:
        self._what = what
        self._example = example
        self._adapters: dict[str, A] = {}

    def register(self, adapter: A, *schemes: str) -> A:
        for scheme in schemes:
            if scheme in self._adapters:
                raise ValueError(f"scheme {scheme!r} is registered twice")
            self._adapters[scheme] = adapter
        return adapter

    def for_url(self, url: str) -> A:
        """The adapter for url's scheme; a ConfigError naming the supported ones otherwise."""
        adapter = self._adapters.get(scheme_of(url))
        if adapter is None:
            raise ConfigError(f"unsupported {self._what} {url!r} (use {self._example})")
        return adapter

    def schemes(self) -> list[str]:
        return sorted(self._adapters)

    def adapters(self) -> list[A]:
        """Each registered adapter once, in registration order."""
        return list({id(a): a for a in self._adapters.values()}.values())
