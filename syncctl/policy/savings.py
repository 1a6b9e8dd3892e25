"""The estimate of Google API calls an attempt saved, credited to exactly one mechanism.

Method. The baseline is the naive poller: every pair polled at its default interval D, each
poll sending the pair's usual request set, with no token gate, breaker, backoff or webhooks.
Each orchestrated attempt ends one stretch of the pair's timeline and claims what the naive
poller would have sent in that stretch minus what the orchestrator sends for it, in whole calls:

- c, calls per poll: the pair's mean `api_calls_made` over its recent successful syncs (the
  orchestrator passes it; incremental syncs are the better basis, as naive polls are incremental
  too); without history, FALLBACK_CALLS_PER_SYNC for the integration.
- Success (scheduled or webhook-triggered) covers the stretch since the last successful sync,
  capped at the interval it was scheduled with, I: the naive poller would have polled
  stretch/D times, the orchestrator once, so it saves c x (stretch/D - 1). Credited to
  `webhook` when a live channel relaxed the interval or a notification triggered the sync
  (an early webhook sync can cost calls: the figure is then negative, and reported as such),
  otherwise to `adaptive_schedule` (zero, and no mechanism, when I = D).
- Skip for `invalid_token` (one per scheduled slot of length I): the naive poller would have
  polled I/D times, and against a revoked grant each poll sends only the refresh request, which
  fails with invalid_grant (REVOKED_POLL_CALLS); the skip sends nothing (or the one refresh that
  discovered the revocation, which is subtracted). Credited to `token_health`. Claiming a full
  sync's calls here would overstate: nothing past the refresh can be sent without a token.
- Skip for `circuit_open`: the due attempt that run-due would otherwise have made against a
  failing service, i.e. the pair's mean calls per failed attempt (fallback: the first request
  sent retry_max_attempts times). Credited to `circuit_breaker`. This baseline is the
  orchestrator's own retry cadence (a failing pair stays due on every run-due), not the naive
  poller, which would have polled a failing pair only every D: during a long outage the claim
  is larger than the naive-poller difference.
- A failed half-open trial is a single probe (no retries): it saves the full failing attempt's
  calls beyond the ones it sent, credited to `circuit_breaker`.
- Manual syncs and other failures save nothing (their calls are counted as made); a manual skip
  saves the one attempt it avoided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from syncctl.config import Settings
from syncctl.model import Integration, SavedBy, Trigger
from syncctl.policy.schedule import Outcome, ScheduleRecord, adaptive_interval

# Without history: contacts = refresh + connections + contactGroups; calendar = refresh +
# calendarList + events of three calendars (primary, contacts' birthdays, holidays).
FALLBACK_CALLS_PER_SYNC: dict[Integration, int] = {
    Integration.CONTACTS: 3,
    Integration.CALENDAR: 5,
}
REVOKED_POLL_CALLS = 1


@dataclass(frozen=True)
class Savings:
    """An attempt's `api_calls_saved` and `saved_by` (None when nothing was saved)."""

    calls: int
    saved_by: SavedBy | None


NOTHING = Savings(0, None)


def calls_per_sync(integration: Integration, recent_mean: float | None) -> float:
    """Calls per poll: the pair's recent mean per successful sync, else the fallback constant."""
    if recent_mean is None or recent_mean <= 0:
        return float(FALLBACK_CALLS_PER_SYNC[integration])
    return recent_mean


def saved_by_token_health(
    schedule: ScheduleRecord | None, trigger: Trigger, calls_made: int
) -> Savings:
    """An invalid-token skip saves the failing refresh a naive poller sends per poll of the slot."""
    if trigger is Trigger.MANUAL or schedule is None:
        polls = 1.0
    else:
        polls = _polls_in(schedule.current_frequency_seconds, schedule)
    return _credit(max(0, _round(polls * REVOKED_POLL_CALLS) - calls_made), SavedBy.TOKEN_HEALTH)


def saved_by_circuit_breaker(calls_per_failure: float | None, settings: Settings) -> Savings:
    """A circuit-open skip saves the calls of the failing attempt it replaced."""
    per_failure = calls_per_failure if calls_per_failure else settings.retry_max_attempts
    return _credit(_round(per_failure), SavedBy.CIRCUIT_BREAKER)


def saved_by_breaker_trial(
    calls_per_failure: float | None, calls_made: int, settings: Settings
) -> Savings:
    """A failed half-open trial is one probe: it saves what a full failing attempt sends more."""
    full_attempt = saved_by_circuit_breaker(calls_per_failure, settings).calls
    return _credit(max(0, full_attempt - calls_made), SavedBy.CIRCUIT_BREAKER)


def saved_by_schedule(
    schedule: ScheduleRecord,
    integration: Integration,
    trigger: Trigger,
    now: datetime,
    settings: Settings,
    recent_calls_per_sync: float | None,
) -> Savings:
    """A success saves c x (stretch/default - 1): `webhook` if a channel or notification shaped
    the stretch, else `adaptive_schedule`."""
    if schedule.last_sync_at is None:
        return NOTHING  # the first sync: the naive poller makes it too
    elapsed = max(0.0, (now - schedule.last_sync_at).total_seconds())
    stretch = min(elapsed, float(schedule.current_frequency_seconds))
    per_poll = calls_per_sync(integration, recent_calls_per_sync)
    calls = _round(per_poll * (_polls_in(stretch, schedule) - 1))
    adaptive = adaptive_interval(
        integration,
        schedule.default_frequency_seconds,
        schedule.consecutive_no_changes,
        settings,
    )
    relaxed = schedule.current_frequency_seconds > adaptive
    if trigger is Trigger.WEBHOOK or relaxed:
        return _credit(calls, SavedBy.WEBHOOK)
    return _credit(calls, SavedBy.ADAPTIVE_SCHEDULE)


def estimate_saved(
    outcome: Outcome,
    *,
    integration: Integration,
    trigger: Trigger,
    schedule: ScheduleRecord | None,
    now: datetime,
    settings: Settings,
    recent_calls_per_sync: float | None = None,
    recent_calls_per_failure: float | None = None,
    calls_made: int = 0,
    breaker_trial: bool = False,
) -> Savings:
    """The calls this attempt saved against the naive poller, and the one mechanism that saved them.

    `schedule` is the pair's record as it was before this attempt updated it (None if the pair
    has no schedule: then only a skip can save anything).
    """
    if outcome is Outcome.INVALID_TOKEN:
        return saved_by_token_health(schedule, trigger, calls_made)
    if outcome is Outcome.CIRCUIT_OPEN:
        return saved_by_circuit_breaker(recent_calls_per_failure, settings)
    if breaker_trial and outcome is Outcome.TRANSIENT_FAILURE:
        return saved_by_breaker_trial(recent_calls_per_failure, calls_made, settings)
    success = outcome in (Outcome.CHANGED, Outcome.UNCHANGED)
    if success and trigger is not Trigger.MANUAL and schedule is not None:
        return saved_by_schedule(
            schedule, integration, trigger, now, settings, recent_calls_per_sync
        )
    return NOTHING


def _polls_in(seconds: float, schedule: ScheduleRecord) -> float:
    return seconds / schedule.default_frequency_seconds


def _round(value: float) -> int:
    return math.floor(value + 0.5)  # half up, also for negatives, so estimates are predictable


def _credit(calls: int, mechanism: SavedBy) -> Savings:
    return Savings(calls, mechanism) if calls != 0 else NOTHING
