"""The circuit breaker per (user, integration) (SPEC 3.2): one transition function per event.

States: `closed` (syncs run), `open` (due syncs are skipped with `circuit_open` until
`next_retry_at`), `half_open` (one trial sync is running). When a trial is admitted the breaker
goes to `half_open` and `next_retry_at` becomes the trial's lease (now + breaker_open_seconds):
if the trial's process dies without reporting, another trial is allowed once the lease expires,
so a breaker can never stay stuck in `half_open`. The orchestrator must store the half-open
record before running the trial so a concurrent attempt sees it and is skipped.

Only transient errors and unexpected responses are failures here (see routing.route); quota,
auth and client outcomes, and skips, neither add to nor reset the count.

The open window (SPEC 3.2, rev 2): the breaker opens for `breaker_open_seconds` at the
threshold-th failure in a row, and each failed half-open trial doubles it (1 h, 2 h, 4 h, ...) up
to `breaker_max_open_seconds`, by default the pair's default interval, so an open breaker notices
a recovery no later than naive polling would. The count of failures in a row is the exponent:
`failure_count - threshold` failed trials since the breaker opened (a success zeroes it), so the
window needs no column of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from syncctl.config import Settings
from syncctl.model import BreakerRecord, BreakerState, SkipReason


@dataclass(frozen=True)
class Admission:
    """Whether an attempt may run, and the record to store before it runs."""

    allowed: bool
    record: BreakerRecord
    skip_reason: SkipReason | None = None

    @property
    def trial(self) -> bool:
        """True when the admitted attempt is the half-open trial."""
        return self.allowed and self.record.state is BreakerState.HALF_OPEN


def allow_attempt(record: BreakerRecord, now: datetime, settings: Settings) -> Admission:
    """Closed admits; otherwise skip before `next_retry_at` and admit one trial at or after it."""
    if record.state is BreakerState.CLOSED:
        return Admission(allowed=True, record=record)
    if record.next_retry_at is not None and now < record.next_retry_at:
        return Admission(allowed=False, record=record, skip_reason=SkipReason.CIRCUIT_OPEN)
    trial = replace(
        record,
        state=BreakerState.HALF_OPEN,
        next_retry_at=now + timedelta(seconds=settings.breaker_open_seconds),
    )
    return Admission(allowed=True, record=trial)


def on_success(record: BreakerRecord, now: datetime) -> BreakerRecord:
    """A success closes the breaker and zeroes the count (the last failure is kept as history)."""
    del now  # part of the event signature; a success needs no timestamp on the breaker row
    return _closed(record)


def open_window_seconds(
    failure_count: int, settings: Settings, default_interval: int | None = None
) -> int:
    """Open for breaker_open_seconds at the threshold, doubled per failure beyond it, to the cap."""
    cap = settings.breaker_max_open_seconds or default_interval or settings.breaker_open_seconds
    cap = max(cap, settings.breaker_open_seconds)
    doublings = max(0, failure_count - settings.breaker_failure_threshold)
    window = settings.breaker_open_seconds
    for _ in range(doublings):
        if window >= cap:
            break
        window *= 2
    return min(window, cap)


def on_failure(
    record: BreakerRecord,
    now: datetime,
    reason: str,
    settings: Settings,
    *,
    default_interval: int | None = None,
) -> BreakerRecord:
    """A failure adds one; the threshold-th in a row opens the breaker, and a failed trial
    re-opens it for twice the last window (to the cap, by default the pair's default interval)."""
    failed = replace(
        record,
        failure_count=record.failure_count + 1,
        last_failure_at=now,
        last_failure_reason=reason,
    )
    opens = record.state is BreakerState.HALF_OPEN or (
        record.state is BreakerState.CLOSED
        and failed.failure_count >= settings.breaker_failure_threshold
    )
    if not opens:
        # Closed below the threshold, or a late failure from an attempt admitted before the
        # breaker opened: the open window is not extended.
        return failed
    return replace(
        failed,
        state=BreakerState.OPEN,
        opened_at=now,
        next_retry_at=now
        + timedelta(seconds=open_window_seconds(failed.failure_count, settings, default_interval)),
    )


def reset(record: BreakerRecord | None = None) -> BreakerRecord:
    """An operator reset or a reconnect closes the breaker and zeroes its count (history kept)."""
    return BreakerRecord() if record is None else _closed(record)


def _closed(record: BreakerRecord) -> BreakerRecord:
    return replace(
        record, state=BreakerState.CLOSED, failure_count=0, opened_at=None, next_retry_at=None
    )
