"""Retrying TransientErrors with jittered exponential backoff: the applier's entries (async)
and blob work in worker threads (`retrying`, blocking) share one policy."""
from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from .errors import PermanentError, TransientError

RETRIES = 5
BACKOFF = 0.05  # seconds; doubled per attempt, with jitter

T = TypeVar("T")


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0-based)."""
    return BACKOFF * 2 ** attempt * (0.5 + random.random())


def retrying(fn: Callable[[], T], attempts: int = RETRIES) -> T:
    """fn(), again on TransientError; the last failure becomes a PermanentError. Blocking."""
    for attempt in range(attempts):
        try:
            return fn()
        except TransientError as exc:
            if attempt == attempts - 1:
                raise PermanentError(f"{exc} (after {attempts} attempts)") from exc
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")
