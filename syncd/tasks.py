"""Task groups that raise what went wrong, not an ExceptionGroup around it.

anyio wraps every error leaving a task group in an ExceptionGroup; the CLI maps syncd's own
exception tree to exit codes, so the first leaf is re-raised as itself.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio
from anyio.abc import TaskGroup


def first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    try:
        async with anyio.create_task_group() as tasks:
            yield tasks
    except BaseExceptionGroup as group:
        raise first_leaf(group) from None
