"""Small helpers on keys and rows shared by the planning steps."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..schema import Entity
from ..stores.base import Row


def key_of(entity: Entity, row: Row) -> Any:
    return row[entity.index(entity.key)]


def sorted_keys(keys: Iterable[Any]) -> list[Any]:
    """Key order keeps target inserts local; any stable order will do for mixed types."""
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=repr)


def batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
