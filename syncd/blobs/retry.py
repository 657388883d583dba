"""Retries for blob work in worker threads: TransientError again, with jittered backoff."""
from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from ..errors import PermanentError, TransientError

RETRIES = 5
BACKOFF = 0.05  # seconds; doubled per attempt, with jitter

T = TypeVar("T")


def retrying(fn: Callable[[], T], attempts: int = RETRIES) -> T:
    """fn(), again on TransientError; the last failure becomes a PermanentError. Blocking."""
    for attempt in range(attempts):
        try:
            return fn()
        except TransientError as exc:
            if attempt == attempts - 1:
                raise PermanentError(f"{exc} (after {attempts} attempts)") from exc
            time.sleep(BACKOFF * 2 ** attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")
