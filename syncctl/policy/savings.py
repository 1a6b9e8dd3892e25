"""The calls an attempt saved against the naive poller, credited to exactly one mechanism.

Method (SPEC 3.4, rev 2). There is one counterfactual for every mechanism: the naive poller,
which polls every pair at its default interval D from the pair's first attempt on (its grid:
anchor, anchor + D, anchor + 2D, ...), through the same engines with the same per-request
retries, and has no token gate, breaker, backoff, adaptive schedule or webhooks.

- Every scheduled or webhook-triggered attempt accounts for one stretch of its pair's timeline:
  from the pair's previous such attempt (exclusive) to itself (inclusive); the first attempt's
  stretch is the anchor itself. The stretches of a pair partition its timeline, so claims summed
  over a fleet and a window add up to what naive polling would have sent minus what was sent.
- Naive polls in the stretch, N: the grid points inside it (an integer, so nothing is lost to
  rounding however short the stretches are: a webhook sync between two grid points has N = 0).
- Calls per naive poll, c, in the condition this attempt found (same engines, same retries):
  - success: the sync's reads plus the naive poll's own token refreshes
    (`naive_poll_refreshes`). The reads are the median `api_calls_made - overhead_calls` of
    the pair's recent scheduled incremental successes, each plus the calendar-list request it
    did not send within the list's own cadence (`poll_equivalent`; the naive poller lists it
    every time): the overhead is channel upkeep (a naive poll sends no watch or stop; under
    push most safety polls are also the weekly renewal) and token refreshes (whether this
    poller's token was fresh says nothing of the naive poller's); the median, so one odd poll
    does not count. Before the pair's first incremental poll, its scheduled full syncs' (the
    same requests when the mirror fits one page, as a just-connected pair's first notified
    syncs find); without history, this attempt's own reads (so counted) when it was a
    scheduled incremental sync, else an unchanged poll's reads from the mirror's shape
    (`unchanged_poll_reads`: the list and one events.list per mirrored calendar; contacts'
    connections and groups), else FALLBACK_CALLS_PER_SYNC. A first sync is the naive poller's
    first poll too (its own reads).
  - a failure of a full attempt (transient, quota, auth, client): its own calls, as a naive poll
    in the same condition sends the same requests with the same retries;
  - a failed single probe (a half-open trial or the fleet breaker's probe, sent without
    retries): its calls plus the retries the naive poller would have added to the request that
    failed (retry_max_attempts - 1);
  - a skip for `invalid_token`: REVOKED_POLL_CALLS, the refresh a naive poll sends and Google
    refuses with invalid_grant (nothing past the refresh can be sent without a token);
  - a skip for `circuit_open` (a manual sync or a notification while open): the pair's recent
    mean calls per failed attempt, else one request retried retry_max_attempts times.
- Saved = round(N x c) - api_calls_made, never below -api_calls_made. It is negative where the
  attempt cost more than naive polling (an early webhook sync: N = 0).
- A manual attempt is made by both pollers (an operator asked for it): N = 1, so a manual
  success saves nothing and a manual skip saves the naive attempt it avoided.
- Credited to: `token_health` for revoked grants, auth and client failures; `circuit_breaker`
  for failures, breaker skips and half-open trials (the backoff before the breaker opens is part
  of the same failure cadence); `webhook` for a success a notification triggered or a live
  channel's relaxed interval shaped; `adaptive_schedule` for the other successes. Zero saves
  nothing and names no mechanism.
Known approximation: a stretch is priced in the condition its ending attempt found, so a stretch
in which a pair went from healthy to failing (or back) is priced as wholly one or the other; at
most one naive poll per change of condition is mispriced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from syncctl.config import Settings
from syncctl.model import Integration, SavedBy, Trigger
from syncctl.policy.schedule import Outcome

# Without history: contacts = refresh + connections + contactGroups; calendar = refresh +
# calendarList + events of three calendars (primary, contacts' birthdays, holidays).
FALLBACK_CALLS_PER_SYNC: dict[Integration, int] = {
    Integration.CONTACTS: 3,
    Integration.CALENDAR: 5,
}
REVOKED_POLL_CALLS = 1
# The calendarList.list a naive poll sends on every calendar poll: one request (an incremental
# listing of an unchanged list is one page) where a sync within the list's cadence sent none.
CALENDAR_LIST_POLL_CALLS = 1
CONTACTS_POLL_READS = 2  # connections and contactGroups, one page each when nothing changed
COUNTERFACTUAL = "naive polling: every pair at its default interval, same engines and retries"

_SUCCESS = frozenset({Outcome.CHANGED, Outcome.UNCHANGED})
_CREDENTIAL = frozenset({Outcome.INVALID_TOKEN, Outcome.AUTH_FAILURE, Outcome.CLIENT_FAILURE})


@dataclass(frozen=True)
class Savings:
    """An attempt's `api_calls_saved` and `saved_by` (None when nothing was saved)."""

    calls: int
    saved_by: SavedBy | None


NOTHING = Savings(0, None)


@dataclass(frozen=True)
class Stretch:
    """The stretch of a pair's timeline one attempt accounts for, on the naive poller's grid.

    `anchor` is the pair's first attempt (the naive poller's first poll), `previous` the pair's
    previous scheduled or webhook-triggered attempt (None for the first), `now` this attempt.
    """

    anchor: datetime
    previous: datetime | None
    now: datetime


def naive_polls(stretch: Stretch, default_seconds: int) -> int:
    """Grid points (anchor + k x default) in (previous, now]; the first stretch holds the anchor."""
    now_index = _grid_index(stretch.anchor, stretch.now, default_seconds)
    if stretch.previous is None:
        return max(0, now_index) + 1
    previous_index = _grid_index(stretch.anchor, stretch.previous, default_seconds)
    return max(0, now_index - max(previous_index, 0))


def poll_equivalent(calls_made: int, calendar_list_skipped: bool) -> int:
    """What a naive poll sends where a sync sent `calls_made`: the same, plus the calendar list
    the sync did not request (policy.calendar_list)."""
    return calls_made + (CALENDAR_LIST_POLL_CALLS if calendar_list_skipped else 0)


def unchanged_poll_reads(integration: Integration, mirrored_calendars: int | None) -> int | None:
    """The reads of a naive poll that finds nothing new, from the mirror's shape (its token
    refresh is naive_poll_refreshes'): calendar, the calendar list and one events.list per
    mirrored calendar (None when none is mirrored yet); contacts, connections and groups."""
    if integration is Integration.CONTACTS:
        return CONTACTS_POLL_READS
    if not mirrored_calendars:
        return None
    return CALENDAR_LIST_POLL_CALLS + mirrored_calendars


def typical_calls(recent: list[int]) -> float | None:
    """The median of a pair's recent calls per poll (channel upkeep already taken out): one
    odd poll (a retried request, a second page) does not move it."""
    if not recent:
        return None
    ordered = sorted(recent)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def naive_poll_refreshes(integration: Integration, settings: Settings) -> int:
    """Token refreshes one naive poll sends. An access token lives an hour, shorter than any
    default interval, so every naive polling moment of a user refreshes once; the naive poller
    polls a user's pairs on grids from one anchor, calendar first, so when the contacts
    interval (3 days) is a multiple of the calendar's (4 hours) every contacts poll rides on
    the calendar poll's refresh: the calendar poll is priced with it, the contacts poll
    without."""
    calendar = settings.calendar_interval_seconds
    if integration is Integration.CALENDAR or settings.contacts_interval_seconds % calendar:
        return 1
    return 0


def calls_per_sync(integration: Integration, recent_mean: float | None) -> float:
    """Calls per poll: the pair's recent mean per successful sync, else the fallback constant."""
    if recent_mean is None or recent_mean <= 0:
        return float(FALLBACK_CALLS_PER_SYNC[integration])
    return recent_mean


def naive_poll_calls(
    outcome: Outcome,
    *,
    integration: Integration,
    calls_made: int,
    settings: Settings,
    single_probe: bool = False,
    first: bool = False,
    own_is_a_poll: bool = False,
    calendar_list_skipped: bool = False,
    recent_calls_per_sync: float | None = None,
    recent_calls_per_failure: float | None = None,
    unchanged_calls: int | None = None,
) -> float:
    """What one naive poll sends in the condition this attempt found (see the module docstring)."""
    if outcome in _SUCCESS:
        refreshes = naive_poll_refreshes(integration, settings)
        if first:
            return float(calls_made + refreshes)
        if recent_calls_per_sync is None and own_is_a_poll and calls_made > 0:
            return float(poll_equivalent(calls_made, calendar_list_skipped) + refreshes)
        if recent_calls_per_sync is None and unchanged_calls is not None:
            return float(unchanged_calls + refreshes)
        if recent_calls_per_sync is None or recent_calls_per_sync <= 0:
            return float(FALLBACK_CALLS_PER_SYNC[integration])
        return recent_calls_per_sync + refreshes
    if outcome is Outcome.INVALID_TOKEN:
        return float(REVOKED_POLL_CALLS)
    if outcome is Outcome.CIRCUIT_OPEN:
        if recent_calls_per_failure:
            return recent_calls_per_failure
        return float(settings.retry_max_attempts)
    if single_probe and outcome is Outcome.TRANSIENT_FAILURE:
        return float(calls_made + settings.retry_max_attempts - 1)
    return float(calls_made)


def mechanism_of(
    outcome: Outcome, *, trigger: Trigger, breaker_trial: bool, webhook_shaped: bool
) -> SavedBy:
    """The one mechanism an attempt's saving is credited to."""
    if outcome in _CREDENTIAL:
        return SavedBy.TOKEN_HEALTH
    if outcome not in _SUCCESS or breaker_trial:
        return SavedBy.CIRCUIT_BREAKER
    if trigger is Trigger.WEBHOOK or webhook_shaped:
        return SavedBy.WEBHOOK
    return SavedBy.ADAPTIVE_SCHEDULE


def estimate_saved(
    outcome: Outcome,
    *,
    integration: Integration,
    trigger: Trigger,
    stretch: Stretch | None,
    default_seconds: int,
    calls_made: int,
    settings: Settings,
    overhead_calls: int = 0,
    single_probe: bool = False,
    breaker_trial: bool = False,
    webhook_shaped: bool = False,
    own_is_a_poll: bool = False,
    calendar_list_skipped: bool = False,
    recent_calls_per_sync: float | None = None,
    recent_calls_per_failure: float | None = None,
    unchanged_calls: int | None = None,
) -> Savings:
    """Naive polling's calls over the stretch this attempt accounts for, minus its own calls.

    `stretch` is None for a manual attempt (one naive attempt, made by both pollers).
    `webhook_shaped`: a live watch channel relaxed the interval that ended this stretch.
    `own_is_a_poll`: this attempt sent what a naive poll sends (a scheduled incremental sync),
    less its `overhead_calls` (channel upkeep and token refreshes; see naive_poll_refreshes),
    but for the calendar list when `calendar_list_skipped`. `unchanged_calls`: an unchanged
    naive poll's reads (`unchanged_poll_reads`), used without history.
    """
    if stretch is None:
        polls = 1
        first = trigger is Trigger.MANUAL
    else:
        polls = naive_polls(stretch, default_seconds)
        first = stretch.previous is None
    per_poll = naive_poll_calls(
        outcome,
        integration=integration,
        calls_made=calls_made - overhead_calls,
        settings=settings,
        single_probe=single_probe,
        first=first,
        own_is_a_poll=own_is_a_poll,
        calendar_list_skipped=calendar_list_skipped,
        recent_calls_per_sync=recent_calls_per_sync,
        recent_calls_per_failure=recent_calls_per_failure,
        unchanged_calls=unchanged_calls,
    )
    calls = max(-calls_made, _round(polls * per_poll) - calls_made)
    if calls == 0:
        return NOTHING
    mechanism = mechanism_of(
        outcome, trigger=trigger, breaker_trial=breaker_trial, webhook_shaped=webhook_shaped
    )
    return Savings(calls, mechanism)


def _grid_index(anchor: datetime, moment: datetime, default_seconds: int) -> int:
    return math.floor((moment - anchor).total_seconds() / default_seconds)


def _round(value: float) -> int:
    return math.floor(value + 0.5)  # half up, so estimates are predictable
