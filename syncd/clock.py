"""Time and run ids in one place, so tests can freeze them."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id() -> str:
    """Sortable by time, short enough to type: 20261122-101530-3f9a."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
