"""Failpoints for crash tests: SYNCD_FAILPOINT="name:N" kills the process with SIGKILL at the
Nth time the named point is reached; "name:N:stop" stops it there with SIGSTOP instead (a
test then looks at what another process does meanwhile, and sends SIGCONT or SIGKILL).
Costs one dict lookup when unset.

A name prefixed "follower/" is reached only in the applier process of an overlapped run
(syncd/follower.py), an unprefixed one only in the process the command started: both inherit
the variable, and each must count its own hits."""
from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("SYNCD_FAILPOINT", "")
_NAME, _, _REST = _SPEC.partition(":")
_COUNT, _, _ACTION = _REST.partition(":")
_hits = 0
_role = ""  # "" for the command's process, "follower/" in the applier process


def set_role(role: str) -> None:
    global _role
    _role = role + "/"


def hit(name: str) -> None:
    global _hits
    if not _SPEC or _role + name != _NAME:
        return
    _hits += 1
    if _hits == int(_COUNT or 1):
        os.kill(os.getpid(), signal.SIGSTOP if _ACTION == "stop" else signal.SIGKILL)
