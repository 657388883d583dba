"""Time and run ids in one place, so tests can freeze them."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone


# How the journal writes instants: UTC, microseconds, so that text order is time order.
FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now() -> str:
    return datetime.now(timezone.utc).strftime(FORMAT)


def parse_instant(text: str) -> str:
    """An ISO-8601 date or date-time as the journal writes instants, so it compares with them
    as text. An offset (`+01:00`, `Z`) is honoured; a time without one is UTC, as every time
    syncd prints; a date alone is its midnight UTC. ValueError for anything else."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date or time (e.g. 2026-12-03,"
                         " 2026-12-03T07:15:47, 2026-12-03T07:15:47+01:00)") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return instant.astimezone(timezone.utc).strftime(FORMAT)


def new_run_id() -> str:
    """Sortable by time, short enough to type: 20261122-101530-3f9a."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
