"""clock.to_iso: the stored form of a time, the same whichever path formats it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from syncctl.clock import from_iso, to_iso

PARIS = ZoneInfo("Europe/Paris")


def reference(moment: datetime) -> str:
    """to_iso as it was: every moment through astimezone and isoformat."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


@pytest.mark.parametrize(
    ("moment", "stored"),
    [
        (datetime(2026, 3, 2, 13, 0, tzinfo=UTC), "2026-03-02T13:00:00+00:00"),
        (datetime(2026, 3, 2, 13, 0, 5, 999_999, tzinfo=UTC), "2026-03-02T13:00:05+00:00"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00+00:00"),
        (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "9999-12-31T23:59:59+00:00"),
        (datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00+00:00"),
        (
            datetime(2026, 3, 2, 14, 0, tzinfo=timezone(timedelta(hours=1))),
            "2026-03-02T13:00:00+00:00",
        ),
        (datetime(2026, 10, 25, 2, 30, tzinfo=PARIS), "2026-10-25T00:30:00+00:00"),
        (datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS), "2026-10-25T01:30:00+00:00"),
    ],
)
def test_to_iso_is_the_fixed_width_utc_form_of_the_moment(moment, stored):
    assert to_iso(moment) == stored == reference(moment)
    assert to_iso(moment) == stored  # a second time: remembered, the same


def test_to_iso_of_a_moment_equal_in_another_zone_is_the_same_text():
    utc = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    assert to_iso(utc.astimezone(PARIS)) == to_iso(utc) == "2026-03-02T13:00:00+00:00"


def test_to_iso_agrees_with_the_reference_over_a_year_of_steps():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for step in range(0, 366 * 24 * 3600, 3_607):
        moment = start + timedelta(seconds=step, microseconds=step % 1_000_000)
        assert to_iso(moment) == reference(moment)
        assert from_iso(to_iso(moment)) == moment.replace(microsecond=0)
