"""One retry policy, applied by one layer per request.

TransientErrors are retried with jittered exponential backoff: the applier's entries (async),
blob work in worker threads (`retrying`, blocking), and HTTP requests inside HttpStore (which
alone knows Retry-After). A layer that retried to its limit raises RetriesExhausted, a
PermanentError, so no layer around it retries again: retries never multiply (an HTTP write
inside the applier's retries was once up to 6 × 6 requests).
"""
from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from .errors import PermanentError, TransientError

RETRIES = 5
ATTEMPTS = RETRIES + 1  # tries of one entry or one HTTP request, the first one included
BACKOFF = 0.05  # seconds; doubled per attempt, with jitter

T = TypeVar("T")


class RetriesExhausted(PermanentError):
    """A TransientError that its own layer already retried as often as the policy allows."""


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0-based)."""
    return BACKOFF * 2.0 ** attempt * (0.5 + random.random())


def retrying(fn: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """fn(), again on TransientError; the last failure becomes RetriesExhausted. Blocking."""
    for attempt in range(attempts):
        try:
            return fn()
        except TransientError as exc:
            if attempt == attempts - 1:
                raise RetriesExhausted(f"{exc} (after {attempts} attempts)") from exc
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")
