"""The one place that reads the real time; everything else is handed `now`."""

import functools
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """Format an aware datetime as the fixed-width UTC ISO-8601 string stored in SQLite."""
    if moment.tzinfo is UTC:
        return _utc_iso(moment)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1024)
def _utc_iso(moment: datetime) -> str:
    # An attempt stores the same few moments (its `now`, its next sync) a dozen times over.
    # Only UTC datetimes are cached: they are equal exactly when they format the same.
    return moment.isoformat(timespec="seconds")


def from_iso(text: str) -> datetime:
    """Parse a stored ISO-8601 string back into an aware UTC datetime."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def from_stored(value: object) -> datetime | None:
    """A time read back from the database; None when it is not a string that parses to a time in
    range (hand-edited, or an old bug), since no stored value may crash a run (SPEC 1)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return from_iso(value)
    except (ValueError, OverflowError):
        return None
