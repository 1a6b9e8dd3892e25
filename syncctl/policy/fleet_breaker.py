"""The fleet breaker per Google API (SPEC 3.2, rev 2): when Google itself fails, stop asking.

One breaker per API: `oauth` (the token endpoint every attempt may need first), `people`
(contacts) and `calendar`. Evidence is what attempts found at each API they sent requests to: a
success there, or a transient failure there (an attempt that failed at the token endpoint never
reached People or Calendar, so it is evidence about `oauth` only).

- Trip: within one window (`fleet_breaker_window_seconds`, default 15 minutes: the current
  run-due and the ones just before it), at least `fleet_breaker_min_attempts` attempts (20)
  against the API and at least `fleet_breaker_failure_ratio` (90%) of them failing transiently
  open its breaker; so does a rolling run of that many transient failures in a row across runs,
  each within the window of the one before (a small fleet's cron run has only a few attempts,
  so its evidence accumulates over runs; any success there ends the run of failures). From then
  on run-due starts no sync that needs that API for the rest of the run.
- Single requests while it looks like an outage: once `fleet_breaker_single_after` (3)
  attempts in a row failed there (or the window holds that many at the failure ratio), further
  attempts that need the API are sent as single requests without retries (like a probe) until
  the breaker trips or one succeeds: the evidence that trips it costs one request an attempt,
  not a retry burst each. One failing user cannot trip it: its pairs' own backoff and breakers
  space its attempts out (5 and 10 minutes, then 1 hour and more), and other users' successes
  end the run.
- Probe: a later run sends one probe (the first due attempt that needs the API, as a single
  request without retries) before anything else that needs it, once the probe delay has passed:
  `fleet_breaker_probe_seconds` (5 minutes) after the breaker opened, then as long again as it
  has been open at the last probe (5, 10, 20, 40 minutes: doubling), at most
  `fleet_breaker_max_probe_seconds` (1 hour) apart, so a recovery is noticed within the hour,
  well before a naive poller's next poll of most pairs (calendar every 4 hours). A run before
  the delay has passed holds everything that needs the API without a request. A probe that does
  not fail transiently at the API closes its breaker and the run goes on; one that does keeps it
  open. A Google-wide outage of 6 hours costs the evidence that trips it (3 retried attempts and
  17 single requests) and about 9 probes per API, not a failing attempt per pair.
- `breaker reset --fleet` closes every fleet breaker and forgets its evidence.
Pairs held back are not attempted: no row, no Google call, no change to their schedule, so they
run as soon as the probe succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from syncctl.config import Settings
from syncctl.model import BreakerState, Integration


class Api(StrEnum):
    """A Google API with a fleet breaker of its own."""

    OAUTH = "oauth"
    PEOPLE = "people"
    CALENDAR = "calendar"


API_NAMES = {Api.OAUTH: "Google OAuth", Api.PEOPLE: "People API", Api.CALENDAR: "Calendar API"}
DATA_API = {Integration.CONTACTS: Api.PEOPLE, Integration.CALENDAR: Api.CALENDAR}


def apis_needed(integration: Integration) -> tuple[Api, Api]:
    """A sync needs the token endpoint and its data API."""
    return (Api.OAUTH, DATA_API[integration])


@dataclass(frozen=True)
class FleetRecord:
    """One API's fleet breaker: its state and the evidence of the current window."""

    api: Api
    state: BreakerState = BreakerState.CLOSED
    window_started_at: datetime | None = None
    attempts: int = 0
    transient_failures: int = 0
    opened_at: datetime | None = None
    last_probe_at: datetime | None = None
    last_failure_reason: str | None = None
    # The rolling run of transient failures in a row, and when the last evidence came.
    consecutive_failures: int = 0
    last_evidence_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state is not BreakerState.CLOSED


@dataclass(frozen=True)
class Evidence:
    """What one attempt found at one API: a transient failure there, or not."""

    api: Api
    transient_failure: bool
    reason: str | None = None


def evidence_of(
    integration: Integration,
    *,
    reached_google: bool,
    failed_api: Api | None,
    transient: bool,
    refreshed: bool,
    reason: str | None = None,
) -> list[Evidence]:
    """The evidence of one attempt: the API it failed at, and each API it got an answer from."""
    if not reached_google:
        return []
    answered_at = failed_api or DATA_API[integration]
    found = [
        Evidence(answered_at, transient and failed_api is not None, reason if transient else None)
    ]
    if refreshed and answered_at is not Api.OAUTH:
        return [Evidence(Api.OAUTH, False), *found]
    return found


def observe(
    record: FleetRecord, evidence: Evidence, now: datetime, settings: Settings
) -> FleetRecord:
    """Add one attempt's evidence to the window (a new window once the old one has passed);
    the breaker opens when the window holds enough attempts and enough of them failed."""
    started = record.window_started_at
    attempts, failures = record.attempts, record.transient_failures
    if started is None or now >= started + timedelta(seconds=settings.fleet_breaker_window_seconds):
        started, attempts, failures = now, 0, 0  # a new window
    record = replace(  # one copy of the record per evidence: every attempt adds some
        record,
        window_started_at=started,
        attempts=attempts + 1,
        transient_failures=failures + int(evidence.transient_failure),
        last_failure_reason=evidence.reason
        if evidence.transient_failure
        else record.last_failure_reason,
        consecutive_failures=failures_in_a_row(record, evidence, now, settings),
        last_evidence_at=now,
    )
    if record.is_open:
        return record
    in_window = trips(record.attempts, record.transient_failures, settings)
    if not in_window and record.consecutive_failures < settings.fleet_breaker_min_attempts:
        return record
    return replace(record, state=BreakerState.OPEN, opened_at=now)


def failures_in_a_row(
    record: FleetRecord, evidence: Evidence, now: datetime, settings: Settings
) -> int:
    """The rolling run of transient failures with this evidence: one more when it failed within
    the window of the last evidence, a new run of one when the last is older, 0 on a success."""
    if not evidence.transient_failure:
        return 0
    if record.last_evidence_at is None or now - record.last_evidence_at > timedelta(
        seconds=settings.fleet_breaker_window_seconds
    ):
        return 1
    return record.consecutive_failures + 1


def trips(attempts: int, transient_failures: int, settings: Settings) -> bool:
    """At least the minimum attempts, and at least the failure ratio of them transient."""
    if attempts < settings.fleet_breaker_min_attempts:
        return False
    return transient_failures >= settings.fleet_breaker_failure_ratio * attempts


def on_probe(record: FleetRecord, evidence: Evidence | None, now: datetime) -> FleetRecord:
    """A probe that did not fail transiently at the API closes its breaker; one that did keeps
    it open (for the rest of the run)."""
    probed = replace(record, last_probe_at=now)
    if evidence is not None and evidence.transient_failure:
        return replace(probed, last_failure_reason=evidence.reason)
    return closed(probed)


def closed(record: FleetRecord) -> FleetRecord:
    """A closed breaker with an empty window (a successful probe, an operator's reset)."""
    return replace(
        record,
        state=BreakerState.CLOSED,
        window_started_at=None,
        attempts=0,
        transient_failures=0,
        opened_at=None,
        consecutive_failures=0,
    )


def looks_like_an_outage(record: FleetRecord, now: datetime, settings: Settings) -> bool:
    """A closed breaker whose last `fleet_breaker_single_after` attempts failed transiently in a
    row (the last within the window), or whose current window holds at least that many
    attempts, at least the failure ratio of them failing."""
    if record.is_open:
        return False
    # The counts are asked first: every due pair is gated, and most records count no failure.
    least = settings.fleet_breaker_single_after
    window = settings.fleet_breaker_window_seconds
    if (
        record.consecutive_failures >= least
        and record.last_evidence_at is not None
        and now - record.last_evidence_at <= timedelta(seconds=window)
    ):
        return True
    if record.attempts < least:
        return False
    if record.transient_failures < settings.fleet_breaker_failure_ratio * record.attempts:
        return False
    # the window has passed: its evidence is forgotten at the next attempt
    return record.window_started_at is not None and now < record.window_started_at + timedelta(
        seconds=window
    )


def probe_due(record: FleetRecord, now: datetime, settings: Settings) -> bool:
    """An open breaker is probed `fleet_breaker_probe_seconds` after it opened, then after as
    long as it had been open at the last probe (doubling), at most
    `fleet_breaker_max_probe_seconds` after the last probe."""
    base = timedelta(seconds=settings.fleet_breaker_probe_seconds)
    if record.opened_at is None:
        return True
    last = record.last_probe_at
    if last is None or last < record.opened_at:  # not probed since it opened
        return now >= record.opened_at + base
    cap = timedelta(seconds=settings.fleet_breaker_max_probe_seconds)
    return now >= last + min(cap, max(base, last - record.opened_at))


class FleetGate(StrEnum):
    """What run-due does with a due pair, as the fleet breakers see it."""

    RUN = "run"  # every API it needs is closed
    SINGLE = "single"  # closed, but its window looks like an outage: one request, no retries
    PROBE = "probe"  # an API it needs is open, its probe is due and this run has not probed it
    HOLD = "hold"  # an API it needs is open: probed (or being probed) in this run, or not due


def gate(
    integration: Integration,
    records: dict[Api, FleetRecord],
    probed: frozenset[Api],
    now: datetime,
    settings: Settings,
) -> tuple[FleetGate, tuple[Api, ...]]:
    """RUN when every needed API is closed (SINGLE when one looks like an outage); else PROBE
    the open ones when each one's probe is due and none was probed this run, else HOLD.
    Returns the decision and the APIs it probes."""
    needed = [records[api] for api in apis_needed(integration) if api in records]
    open_apis = tuple(record.api for record in needed if record.is_open)
    if not open_apis:
        if any(looks_like_an_outage(record, now, settings) for record in needed):
            return FleetGate.SINGLE, ()
        return FleetGate.RUN, ()
    if any(api in probed for api in open_apis):
        return FleetGate.HOLD, ()
    if not all(probe_due(records[api], now, settings) for api in open_apis):
        return FleetGate.HOLD, ()
    return FleetGate.PROBE, open_apis
