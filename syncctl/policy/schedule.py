"""The adaptive schedule (SPEC 3.5) and what each attempt's outcome does to `next_sync_at`.

Choices where the contract is silent, as a fleet operator would want them:
- The interval doubles (x backoff_multiplier) at every `no_change_threshold`-th consecutive
  no-change sync (the 5th, 10th, 15th, ...) until the cap; with the default cap (2x the
  default) that is once, at the 5th. A raised cap lets a quiet pair keep backing off.
- Contacts are also held strictly below the People sync-token lifetime, with a seventh of it
  (one day at the default 7 days) as headroom for late runs and retries, so backing off never
  lets the sync token expire and force a full sync.
- `last_sync_at` is the time of the last successful scheduled or webhook-triggered sync; skips
  and failures leave it alone. After a success `next_sync_at = last_sync_at +
  current_frequency_seconds`; skips and failures move `next_sync_at` only.
- While a live watch channel covers a calendar, `current_frequency_seconds` holds the relaxed
  interval (never shorter than the adaptive one), so the formula above still holds; the
  no-change counter keeps counting, and the first success without one (the channel lapsed or
  could not be renewed) returns to the adaptive interval. The relaxed (safety) interval
  doubles at every no-change poll up to `webhook_safety_max_seconds`, the channel TTL: the
  channel's renewal sync, due within that TTL anyway, is then the safety poll.
- A notified sync (only the calendars a push named) is evidence the channel delivers: under a
  live channel it counts as a quiet safety poll (see after_notified_sync), never as a reset.
- A revoked grant's skip (no Google call) advances by the current interval, at most the
  adaptive cap: a revoked user's channels are not renewed, so push's relaxed interval ends.
- A webhook notification makes the pair due now; the caller stores `pending_trigger = webhook`
  with it (the column lives beside the record, not in it), so the attempt runs as `webhook`.
- A failure never costs more than naive polling (rev 2): a transient failure is retried after
  `failure_backoff_seconds` (5 minutes), doubling with each failure in a row, never later than
  the current interval; when the breaker opens, `next_sync_at` is its `next_retry_at`, so an
  open pair is not due and run-due writes no row for it until its trial. A client failure (the
  OAuth client was refused) leaves the pair due: nothing is wrong with the user, and run-due
  sends one request per client and run until the operator fixes the client.
- Manual syncs never change the schedule: `update_schedule` returns the record unchanged for
  them, and the per-outcome functions are for scheduled and webhook-triggered attempts only.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from syncctl.config import Settings
from syncctl.model import Integration, ScheduleRecord, Trigger


class Outcome(StrEnum):
    """How an orchestrated attempt ended, as the schedule and the savings estimate see it."""

    CHANGED = "changed"  # success that found additions, updates or deletions
    UNCHANGED = "unchanged"  # success that found nothing new
    INVALID_TOKEN = "invalid_token"  # skipped: the grant is revoked (no sync ran)
    AUTH_FAILURE = "auth_failure"  # failed mid-sync on an auth error (now revoked)
    CIRCUIT_OPEN = "circuit_open"  # skipped: the breaker is open
    TRANSIENT_FAILURE = "transient_failure"  # transient error or unexpected response
    QUOTA_FAILURE = "quota_failure"  # quota errors outlasted the retries
    CLIENT_FAILURE = "client_failure"  # Google refused the OAuth client (not the user's grant)
    MASS_DELETE_HELD = "mass_delete_held"  # skipped: the mass-delete guard held the deletions


def initial_schedule(integration: Integration, now: datetime, settings: Settings) -> ScheduleRecord:
    """A new pair starts at its default interval with no history and is due now."""
    default = settings.interval_for(integration)
    return ScheduleRecord(
        default_frequency_seconds=default,
        current_frequency_seconds=adaptive_interval(integration, default, 0, settings),
        consecutive_no_changes=0,
        last_sync_at=None,
        next_sync_at=now,
    )


def is_due(next_sync_at: datetime, now: datetime, *, held: bool = False) -> bool:
    """A pair is due from its `next_sync_at` on, that instant included; a pair the mass-delete
    guard holds is not due at all until an operator acts (`sync --allow-mass-delete/--full`)."""
    return not held and now >= next_sync_at


def on_reconnect(
    record: ScheduleRecord | None, integration: Integration, now: datetime, settings: Settings
) -> ScheduleRecord:
    """A (re)connected pair is due now: a new one starts from `initial_schedule`, a known one
    keeps its interval and history and becomes due now (never later)."""
    if record is None:
        return initial_schedule(integration, now, settings)
    return replace(record, next_sync_at=min(record.next_sync_at, now))


def interval_cap(integration: Integration, default_seconds: int, settings: Settings) -> int:
    """The interval never exceeds cap x default; contacts also stay below the token lifetime."""
    cap = int(default_seconds * settings.interval_cap_multiplier)
    if integration is Integration.CONTACTS:
        lifetime = settings.people_sync_token_lifetime_seconds
        cap = min(cap, lifetime - max(1, lifetime // 7))
    return cap


def adaptive_interval(
    integration: Integration, default_seconds: int, consecutive_no_changes: int, settings: Settings
) -> int:
    """The interval doubles at each `no_change_threshold`-th no-change sync in a row, to the cap."""
    cap = interval_cap(integration, default_seconds, settings)
    interval: float = default_seconds
    for _ in range(consecutive_no_changes // settings.no_change_threshold):
        if interval >= cap:
            break
        interval *= settings.backoff_multiplier
    return int(min(interval, cap))


def polling_interval_with_live_channel(
    adaptive_seconds: int, settings: Settings, consecutive_no_changes: int = 0
) -> int:
    """While a live channel covers a calendar, polling relaxes to the safety interval (24 h),
    which backs off like a quiet pair, doubled (x backoff_multiplier) at EVERY no-change poll
    up to `webhook_safety_max_seconds` (7 days): 1, 2, 4, then 7 days. A quiet pair doubles
    after `no_change_threshold` polls, 5 x 4 h = 20 h without a change; one safety poll
    already vouches for 24 h of push delivering everything."""
    interval: float = settings.webhook_safety_interval_seconds
    cap = max(interval, settings.webhook_safety_max_seconds)
    for _ in range(consecutive_no_changes):
        if interval >= cap:
            break
        interval *= settings.backoff_multiplier
    return int(max(adaptive_seconds, min(interval, cap)))


def before_renewal(next_sync_at: datetime, renew_by: datetime | None) -> datetime:
    """A sync is brought forward to the moment the first watch channel must be renewed."""
    return next_sync_at if renew_by is None else min(next_sync_at, renew_by)


def after_notified_sync(
    record: ScheduleRecord,
    now: datetime,
    settings: Settings,
    *,
    list_refreshed_at: datetime | None,
    renew_by: datetime | None = None,
    channel_live: bool = False,
) -> ScheduleRecord:
    """A sync of only the notified calendars proves the channel delivers: while channels cover
    the calendars it counts as one quiet safety poll (the no-change count goes up and the safety
    interval backs off by it, to its cap), and it never moves the safety poll's base: the poll
    stays due at the calendar list's last refresh plus that interval (or at the first renewal,
    if sooner), so push can defer it at most to `webhook_safety_max_seconds` after the list's
    last refresh."""
    if channel_live:
        no_changes = record.consecutive_no_changes + 1
        adaptive = adaptive_interval(
            Integration.CALENDAR, record.default_frequency_seconds, no_changes, settings
        )
        record = replace(
            record,
            consecutive_no_changes=no_changes,
            current_frequency_seconds=polling_interval_with_live_channel(
                adaptive, settings, no_changes
            ),
        )
    base = list_refreshed_at or now
    due = base + timedelta(seconds=record.current_frequency_seconds)
    return replace(record, last_sync_at=now, next_sync_at=before_renewal(due, renew_by))


def after_change(
    record: ScheduleRecord,
    integration: Integration,
    now: datetime,
    settings: Settings,
    *,
    channel_live: bool = False,
) -> ScheduleRecord:
    """A success that found changes restores the default interval and zeroes the counter."""
    return _after_success(record, integration, now, settings, 0, channel_live)


def after_no_change(
    record: ScheduleRecord,
    integration: Integration,
    now: datetime,
    settings: Settings,
    *,
    channel_live: bool = False,
) -> ScheduleRecord:
    """A success that found no change adds one to the counter and backs the interval off by it."""
    no_changes = record.consecutive_no_changes + 1
    return _after_success(record, integration, now, settings, no_changes, channel_live)


def after_invalid_token(
    record: ScheduleRecord, now: datetime, integration: Integration, settings: Settings
) -> ScheduleRecord:
    """A revoked grant's skip advances `next_sync_at` by the current interval, as a sync would,
    but never by more than the adaptive cap: a revoked user's channels are never renewed, so
    the relaxed push interval no longer applies (each skip costs no Google call)."""
    cap = interval_cap(integration, record.default_frequency_seconds, settings)
    delay = min(record.current_frequency_seconds, cap)
    return replace(record, next_sync_at=now + timedelta(seconds=delay))


def failure_backoff_seconds(failure_count: int, current_interval: int, settings: Settings) -> int:
    """The n-th transient failure in a row retries after backoff x 2^(n-1), at most the interval."""
    delay = settings.failure_backoff_seconds
    for _ in range(max(0, failure_count - 1)):
        if delay >= current_interval:
            break
        delay *= 2
    return min(delay, current_interval)


def after_transient_failure(
    record: ScheduleRecord,
    now: datetime,
    settings: Settings,
    *,
    failure_count: int,
    breaker_retry_at: datetime | None = None,
) -> ScheduleRecord:
    """A transient failure retries after a growing backoff; an open breaker's pair waits for its
    `next_retry_at` (not due while open)."""
    if breaker_retry_at is not None:
        return replace(record, next_sync_at=breaker_retry_at)
    delay = failure_backoff_seconds(failure_count, record.current_frequency_seconds, settings)
    return replace(record, next_sync_at=now + timedelta(seconds=delay))


def after_circuit_open(
    record: ScheduleRecord, breaker_retry_at: datetime | None = None
) -> ScheduleRecord:
    """An attempt asked for while the breaker is open leaves the pair due at `next_retry_at`."""
    if breaker_retry_at is None:
        return record
    return replace(record, next_sync_at=breaker_retry_at)


def after_quota_failure(
    record: ScheduleRecord, now: datetime, settings: Settings, retry_after: float | None
) -> ScheduleRecord:
    """A quota failure defers the pair by Retry-After (rounded up), else by quota_defer_seconds."""
    if retry_after is None:
        delay = settings.quota_defer_seconds
    else:
        delay = math.ceil(max(0.0, retry_after))
    return replace(record, next_sync_at=now + timedelta(seconds=delay))


def on_webhook_notification(record: ScheduleRecord, now: datetime) -> ScheduleRecord:
    """A valid notification makes the pair due now (never later); store it with trigger webhook."""
    return replace(record, next_sync_at=min(record.next_sync_at, now))


def update_schedule(
    record: ScheduleRecord,
    outcome: Outcome,
    *,
    integration: Integration,
    trigger: Trigger,
    now: datetime,
    settings: Settings,
    retry_after: float | None = None,
    channel_live: bool = False,
    failure_count: int = 1,
    breaker_retry_at: datetime | None = None,
    renew_by: datetime | None = None,
    notified_only: bool = False,
    list_refreshed_at: datetime | None = None,
) -> ScheduleRecord:
    """Manual attempts never change the schedule; other attempts apply their outcome's rule.

    `failure_count` is the breaker's count after this attempt and `breaker_retry_at` its
    `next_retry_at` when the breaker is open (or half-open) after it, else None.
    `notified_only`: the attempt synced only the calendars a push named (see
    after_notified_sync); `renew_by`: when the first watch channel must be renewed.
    """
    if trigger is Trigger.MANUAL:
        return record
    success = outcome in (Outcome.CHANGED, Outcome.UNCHANGED)
    if success and notified_only:
        return after_notified_sync(
            record,
            now,
            settings,
            list_refreshed_at=list_refreshed_at,
            renew_by=renew_by,
            channel_live=channel_live,
        )
    if outcome is Outcome.CHANGED:
        updated = after_change(record, integration, now, settings, channel_live=channel_live)
        return replace(updated, next_sync_at=before_renewal(updated.next_sync_at, renew_by))
    if outcome is Outcome.UNCHANGED:
        updated = after_no_change(record, integration, now, settings, channel_live=channel_live)
        return replace(updated, next_sync_at=before_renewal(updated.next_sync_at, renew_by))
    if outcome in (Outcome.INVALID_TOKEN, Outcome.AUTH_FAILURE):
        return after_invalid_token(record, now, integration, settings)
    if outcome is Outcome.QUOTA_FAILURE:
        return after_quota_failure(record, now, settings, retry_after)
    if outcome is Outcome.CIRCUIT_OPEN:
        return after_circuit_open(record, breaker_retry_at)
    if outcome is Outcome.CLIENT_FAILURE:
        return record
    if outcome is Outcome.MASS_DELETE_HELD:
        return record  # not due while held (is_due); due at its time again once acted on
    return after_transient_failure(
        record, now, settings, failure_count=failure_count, breaker_retry_at=breaker_retry_at
    )


def _after_success(
    record: ScheduleRecord,
    integration: Integration,
    now: datetime,
    settings: Settings,
    consecutive_no_changes: int,
    channel_live: bool,
) -> ScheduleRecord:
    interval = adaptive_interval(
        integration, record.default_frequency_seconds, consecutive_no_changes, settings
    )
    if channel_live and integration is Integration.CALENDAR:
        interval = polling_interval_with_live_channel(interval, settings, consecutive_no_changes)
    return replace(
        record,
        current_frequency_seconds=interval,
        consecutive_no_changes=consecutive_no_changes,
        last_sync_at=now,
        next_sync_at=now + timedelta(seconds=interval),
    )
