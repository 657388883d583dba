"""The hash chain: each event's hash covers the previous hash, so any edit, removal or
reordering changes every hash from that point on."""
from __future__ import annotations

import hashlib

# The first event has no predecessor; it links to this fixed value instead.
GENESIS = bytes(32)


def link(previous: bytes, body: bytes) -> bytes:
    """sha256(previous hash ‖ body): the hash stored with `body`."""
    return hashlib.sha256(previous + body).digest()
