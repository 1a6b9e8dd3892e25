"""The gate in front of every Google call (SPEC 3.1 and 3.2): revoked grant, then the breaker.

One function decides it for the real run (`Orchestrator.attempt`), the dry run (`plan_due`), the
report's "next run", `user remove` (may its channels be stopped at Google?) and a webhook
notification (may it make the calendar due?), so they agree by construction. SQL may narrow the
candidate rows; it never decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from syncctl.config import Settings
from syncctl.model import BreakerRecord, BreakerState, ScheduleRecord, SkipReason, TokenStatus
from syncctl.policy import breaker as breaker_policy
from syncctl.policy import mass_delete, token_health
from syncctl.policy import schedule as schedule_policy


@dataclass(frozen=True)
class Gate:
    """Whether an attempt may call Google; if not, the skip reason; the breaker record to store
    before a half-open trial runs (its lease)."""

    allowed: bool
    skip_reason: SkipReason | None
    breaker: BreakerRecord

    @property
    def trial(self) -> bool:
        """True when the admitted attempt is the half-open trial (one probe, no retries)."""
        return self.allowed and self.breaker.state is BreakerState.HALF_OPEN


def gate(
    token_status: TokenStatus,
    breaker: BreakerRecord,
    now: datetime,
    settings: Settings,
    *,
    held: bool = False,
    allow_mass_delete: bool = False,
    full: bool = False,
) -> Gate:
    """A revoked grant skips with `invalid_token` (no call at all, not even a refresh); else a
    pair the mass-delete guard holds skips with `mass_delete_held` unless the operator applies
    (`allow_mass_delete`) or re-fetches (`full`); else an open breaker, or a half-open one whose
    trial lease is held, skips with `circuit_open`; else the attempt runs (as the trial when the
    breaker's wait is over)."""
    if not token_health.may_call_google(token_status):
        return Gate(False, SkipReason.INVALID_TOKEN, breaker)
    if not mass_delete.may_sync_held_pair(held, allow_mass_delete=allow_mass_delete, full=full):
        return Gate(False, SkipReason.MASS_DELETE_HELD, breaker)
    admission = breaker_policy.allow_attempt(breaker, now, settings)
    if not admission.allowed:
        return Gate(False, SkipReason.CIRCUIT_OPEN, breaker)
    return Gate(True, None, admission.record)


def on_notification(
    schedule: ScheduleRecord | None, token_status: TokenStatus, now: datetime
) -> ScheduleRecord | None:
    """A valid webhook notification makes the calendar due now (never later), unless its grant
    is revoked (no call is possible until a reconnect); None: nothing to change. The breaker is
    not consulted here: the attempt it triggers passes the whole gate and, if open, records a
    `circuit_open` skip for the notification."""
    if schedule is None or not token_health.may_call_google(token_status):
        return None
    return schedule_policy.on_webhook_notification(schedule, now)
