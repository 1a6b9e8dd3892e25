"""Values read back from the database, brought into range: a stored value out of range must never
stop a later run (SPEC 1), so the policies only ever see values valid settings could produce."""

from __future__ import annotations

from datetime import UTC, datetime

from syncctl.clock import from_stored
from syncctl.config import MAX_INTERVAL_SECONDS, MAX_STORED_INTERVAL_SECONDS
from syncctl.model import ScheduleRecord

LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)  # an unreadable next_sync_at makes the pair due
MAX_STORED_COUNT = 2**31 - 1


def clamped(value: object, low: int, high: int, fallback: int) -> int:
    """A stored whole number within [low, high]; `fallback` for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return fallback
    return int(min(max(value, low), high))


def due_time(text: object) -> datetime:
    """A stored next_sync_at; one that does not read makes the pair due (the run and the plans
    agree)."""
    return from_stored(text) or LONG_AGO


def schedule_record(
    default: object, current: object, no_changes: object, last_at: object, next_at: object
) -> ScheduleRecord:
    """A `sync_schedule` row's timing columns as a ScheduleRecord, each within its range."""
    default_seconds = clamped(default, 1, MAX_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS)
    return ScheduleRecord(
        default_frequency_seconds=default_seconds,
        current_frequency_seconds=clamped(current, 1, MAX_STORED_INTERVAL_SECONDS, default_seconds),
        consecutive_no_changes=clamped(no_changes, 0, MAX_STORED_COUNT, 0),
        last_sync_at=from_stored(last_at),
        next_sync_at=due_time(next_at),
    )
