"""Idempotency keys: a retried write gets the answer its first attempt got.

Writes are idempotent by key anyway (create skips what exists), but when a response is lost
(a dropped connection, a timeout) and the client sends the write again, the second attempt
would report "skipped" for rows the first one created. With the same `Idempotency-Key`, the
server replays the first answer instead, so the journal says what really happened. A retry
that arrives while the first attempt is still running waits for it.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Awaitable, Callable

import anyio

from .errors import ApiError

KEEP = 64  # recent answers kept; retries come within seconds, so a few dozen are plenty


class Replays:
    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._done: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()  # key → (fingerprint, answer)
        self._running: dict[str, anyio.Event] = {}

    async def run(self, key: str | None, body: bytes, write: Callable[[], Awaitable[bytes]]) -> bytes:
        """`write()`'s answer, or the answer to the earlier request with this key."""
        if key is None:
            return await write()
        fingerprint = hashlib.blake2b(body, digest_size=16).digest()
        while key in self._running:
            await self._running[key].wait()
        if key in self._done:
            if self._done[key][0] != fingerprint:
                raise ApiError(422, "Idempotency-Key already used for a different request")
            return self._done[key][1]
        self._running[key] = done = anyio.Event()
        try:
            answer = await write()  # a failed write is not remembered: its retry runs again
            self._done[key] = (fingerprint, answer)
            while len(self._done) > self._keep:
                self._done.popitem(last=False)
            return answer
        finally:
            del self._running[key]
            done.set()
