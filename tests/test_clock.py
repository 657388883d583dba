"""Run ids sort by time and journal times are UTC with microseconds."""
from __future__ import annotations

from freezegun import freeze_time

from syncd.clock import new_run_id, now


def test_now_is_utc_iso_with_microseconds() -> None:
    with freeze_time("2026-11-22 10:15:30.123456"):
        assert now() == "2026-11-22T10:15:30.123456Z"


def test_run_ids_sort_by_time() -> None:
    with freeze_time("2026-11-22 10:15:30"):
        early = new_run_id()
    with freeze_time("2026-11-22 10:15:31"):
        late = new_run_id()
    assert early.startswith("20261122-101530-") and late.startswith("20261122-101531-")
    assert sorted([late, early]) == [early, late]
