"""Idempotency keys: a retried write gets the answer its first attempt got.

Writes are idempotent by key anyway (create skips what exists), but when a response is lost
(a dropped connection, a timeout) and the client sends the write again, the second attempt
would report "skipped" for rows the first one created. With the same `Idempotency-Key`, the
server replays the first answer instead, so the journal says what really happened. A retry
that arrives while the first attempt is still running waits for it.

The promise: a retry within WINDOW seconds of its first answer gets that answer. Answers are
kept per token, so one caller's writes never push out another's, and at most KEEP per token;
a token that would need more (KEEP writes within one window) gets 429 until its oldest answer
ages out, rather than losing an answer a retry may still need.
"""
from __future__ import annotations

import hashlib
import math
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Awaitable, Callable

import anyio

from .errors import ApiError

WINDOW = 600.0  # seconds: the client retries one request for at most ~3 minutes (6 × 30 s)
KEEP = 4096  # answers per token within a window: a sync writes far fewer


@dataclass(frozen=True)
class _Answer:
    fingerprint: bytes  # of the request body: a key reused for another request is refused
    packed: bytes  # the answer, compressed: outcome lists repeat one word thousands of times
    at: float


class Replays:
    def __init__(self, window: float = WINDOW, keep: int = KEEP,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._keep = keep
        self._clock = clock
        self._done: dict[str, OrderedDict[str, _Answer]] = {}  # caller → key → answer, oldest first
        self._running: dict[tuple[str, str], anyio.Event] = {}

    async def run(self, caller: str, key: str | None, body: bytes,
                  write: Callable[[], Awaitable[bytes]]) -> bytes:
        """`write()`'s answer, or the answer to the caller's earlier request with this key."""
        if key is None:
            return await write()
        fingerprint = hashlib.blake2b(body, digest_size=16).digest()
        while (caller, key) in self._running:
            await self._running[caller, key].wait()
        done = self._fresh(caller)
        if key in done:
            if done[key].fingerprint != fingerprint:
                raise ApiError(422, "Idempotency-Key already used for a different request")
            return zlib.decompress(done[key].packed)
        self._make_room(done)
        self._running[caller, key] = finished = anyio.Event()
        try:
            answer = await write()  # a failed write is not remembered: its retry runs again
            done[key] = _Answer(fingerprint, zlib.compress(answer), self._clock())
            return answer
        finally:
            del self._running[caller, key]
            finished.set()

    def _fresh(self, caller: str) -> OrderedDict[str, _Answer]:
        """The caller's answers, without those whose window is over."""
        done = self._done.setdefault(caller, OrderedDict())
        expired = self._clock() - self._window
        while done and next(iter(done.values())).at <= expired:
            done.popitem(last=False)
        return done

    def _make_room(self, done: OrderedDict[str, _Answer]) -> None:
        """429 when every kept answer may still be asked for again (Retry-After: until the
        oldest one ages out)."""
        if len(done) < self._keep:
            return
        oldest = next(iter(done.values())).at
        wait = max(1, math.ceil(oldest + self._window - self._clock()))
        raise ApiError(429, f"more than {self._keep} writes with an Idempotency-Key within "
                            f"{self._window:g} s; retry later", {"Retry-After": str(wait)})
