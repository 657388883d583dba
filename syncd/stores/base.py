"""The RecordStore port: what the planner reads and the applier writes.

Rows are tuples in `entity.columns` order. Keys are the primary-key values as the store
returns them. Every method is async so network stores (HTTP, later) fit the same port;
the SQLite adapter runs its work in a worker thread.
"""
from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, Sequence, runtime_checkable

from ..filters import Filter
from ..schema import Entity, TableInfo

Row = tuple[Any, ...]
Patch = tuple[Any, dict[str, Any]]  # (key, {column: new value})


class RecordStore(Protocol):
    name: str  # the environment's name, for messages

    async def describe(self) -> list[TableInfo]: ...

    async def select_page(
        self, entity: Entity, filters: Sequence[Filter], after: Any | None, limit: int,
        order_by: str | None = None,
    ) -> list[Row]:
        """Rows matching every filter, at most `limit`, in keyset order.

        Without `order_by`: ordered by key, `after` is the last key seen (None: from the start).
        With `order_by` (a column, e.g. an incremental `created_at`): ordered by (column, key),
        rows whose column is NULL left out, and `after` is the last (column value, key) seen.
        """

    async def select_all(self, entity: Entity, filters: Sequence[Filter]) -> list[Row]:
        """Every row matching the filters, in no particular order (callers bound the size)."""

    async def fetch(self, entity: Entity, keys: Sequence[Any]) -> list[Row]:
        """Rows with these keys, in key order; missing keys are simply absent."""

    async def existing_keys(self, entity: Entity, keys: Sequence[Any]) -> set[Any]: ...

    async def match_natural(
        self, entity: Entity, values: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], Any]:
        """Natural-key tuple → this store's key, for the tuples it has."""

    async def create(self, entity: Entity, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> list[bool]:
        """Create-if-absent in one transaction; True where the row was created."""

    async def update(self, entity: Entity, patches: Sequence[Patch]) -> list[bool]:
        """Patch fields in one transaction; True where a row was changed."""

    async def delete(self, entity: Entity, keys: Sequence[Any]) -> list[bool]:
        """Delete-if-present in one transaction; True where a row was deleted."""

    async def close(self) -> None: ...


@runtime_checkable
class KeyRange(Protocol):
    """A store that can say its largest integer key, so `clone` can give new records the
    next free integers above it. SQLite, Postgres and the in-memory store can; the HTTP
    API cannot, and a clone with integer keys into it is refused."""

    async def max_key(self, entity: Entity) -> int | None:
        """The largest integer key of the entity's table; None when it holds none."""


@runtime_checkable
class Atomic(Protocol):
    """A store that can run many writes as ONE transaction (`syncd move`): inside `atomic()`
    every create, update and delete joins it (each as a savepoint), and `count` reads what
    the transaction sees, so checks run before the commit. An error leaving the block rolls
    everything back."""

    def atomic(self) -> AbstractAsyncContextManager[None]: ...

    async def count(self, entity: Entity, filters: Sequence[Filter]) -> int:
        """Rows matching every filter."""

