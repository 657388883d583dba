"""Failpoints for crash tests: SYNCD_FAILPOINT="name:N" kills the process with SIGKILL at the
Nth time the named point is reached. Costs one dict lookup when unset."""
from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("SYNCD_FAILPOINT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_hits = 0


def hit(name: str) -> None:
    global _hits
    if not _SPEC or name != _NAME:
        return
    _hits += 1
    if _hits == int(_COUNT or 1):
        os.kill(os.getpid(), signal.SIGKILL)
