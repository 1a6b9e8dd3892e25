"""How an attempt's ending changes its pair: `conclude(state, verdict, now, settings)`.

The pipeline loads the pair's state once (`PairState`), runs the gate and the sync, and hands
the ending (`Verdict`) to `conclude`, which returns everything the attempt writes (`PairUpdate`:
the metrics row, breaker, schedule, token health, notice); the store writes it in one
transaction. Each part is decided by the rule's own policy function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from syncctl.clock import to_iso
from syncctl.config import Settings
from syncctl.model import (
    AttemptRecord,
    BreakerRecord,
    BreakerState,
    ErrorClass,
    Notice,
    PairState,
    PairUpdate,
    RefreshedToken,
    Result,
    ScheduleMark,
    ScheduleRecord,
    SkipReason,
    SyncOutcome,
    SyncType,
    TokenHealthUpdate,
    Trigger,
)
from syncctl.policy import breaker as breaker_policy
from syncctl.policy import mass_delete, routing, savings, token_health
from syncctl.policy import schedule as schedule_policy
from syncctl.policy.mass_delete import Deletions
from syncctl.policy.schedule import Outcome
from syncctl.policy.token_health import TokenCheck

# Endings that move a pair on, so a webhook trigger left pending is used up.
CONSUMING_OUTCOMES = frozenset(
    {Outcome.CHANGED, Outcome.UNCHANGED, Outcome.INVALID_TOKEN, Outcome.AUTH_FAILURE}
)


@dataclass(frozen=True)
class Verdict:
    """How one attempt ended, before anything is written.

    `admitted` is the breaker record the gate admitted the attempt with (the trial lease for a
    half-open trial); None when the gate skipped it.
    """

    trigger: Trigger
    result: Result
    skip_reason: SkipReason | None = None
    outcome: SyncOutcome | None = None
    error_class: ErrorClass | None = None
    error_message: str | None = None
    grant_revoked: bool = False  # invalid_grant: the whole grant is gone, not only this pair
    retry_after: float | None = None
    channel_live: bool = False  # every calendar of the user has a live watch channel
    renew_by: datetime | None = None  # the first watch channel must be renewed by then
    notified_only: bool = False  # only the calendars a push named were synced
    list_refreshed_at: datetime | None = None  # the calendar list's last listing
    admitted: BreakerRecord | None = None
    calls_made: int = 0
    overhead_calls: int = 0  # of calls_made, channel upkeep and token refreshes (a success's)
    duration_ms: int = 0
    fleet_probe: bool = False  # the fleet breaker's probe: one request without retries
    failed_api: str | None = None  # the API whose request failed (GoogleError.api)
    held: Deletions | None = None  # what the mass-delete guard held (skip `mass_delete_held`)
    calendar_list_skipped: bool = False  # a calendar sync that did not request the list
    refreshed: RefreshedToken | None = None  # the access token a refresh obtained, to store

    @property
    def trial(self) -> bool:
        """Whether the attempt was the half-open trial of an open breaker."""
        return self.admitted is not None and self.admitted.state is BreakerState.HALF_OPEN

    @property
    def single_probe(self) -> bool:
        """Whether the attempt was sent without retries (a half-open trial, a fleet probe)."""
        return self.trial or self.fleet_probe

    @property
    def ending(self) -> Outcome:
        """The outcome the schedule and the savings estimate see."""
        return routing.outcome_of(
            self.result,
            changed=bool(self.outcome and self.outcome.changed),
            skip_reason=self.skip_reason,
            error_class=self.error_class,
        )

    @property
    def token_check(self) -> TokenCheck | None:
        """What the attempt proved about the grant (None: nothing)."""
        if self.result is Result.SUCCESS:
            return TokenCheck.ACCEPTED
        if self.error_class is ErrorClass.AUTH:
            return TokenCheck.INVALID_GRANT if self.grant_revoked else TokenCheck.AUTH_REJECTED
        return None


def conclude(state: PairState, verdict: Verdict, now: datetime, settings: Settings) -> PairUpdate:
    """Everything an attempt writes: its metrics row with the calls it saved, the breaker's
    transition, the schedule's move, the token-health verdict, at most one notice (reconnect, or
    a held mass delete), the mass-delete hold recorded or cleared, and a refreshed token."""
    token, notice = _token_health(state, verdict)
    breaker = _breaker(state, verdict, now, settings)
    schedule, keep_pending = _schedule(state, verdict, breaker, now, settings)
    hold, hold_cleared = mass_delete.after_attempt(
        verdict.held, was_held=state.mass_delete_held, synced=verdict.result is Result.SUCCESS
    )
    if verdict.held is not None:
        notice = mass_delete.held_notice(
            state.user_id,
            state.integration,
            verdict.held,
            notice_open=state.mass_delete_notice_open,
        )
    return PairUpdate(
        attempt=_attempt_record(state, verdict, now, settings),
        breaker=breaker,
        schedule=schedule,
        keep_pending=keep_pending,
        token_health=token,
        notice=notice,
        refreshed=verdict.refreshed,
        hold=hold,
        hold_cleared=hold_cleared,
    )


def keep_notification(
    update: PairUpdate, loaded: ScheduleMark | None, current: ScheduleMark | None
) -> PairUpdate:
    """A webhook notification that arrived while the attempt ran keeps the pair due for another
    sync: the earlier of the two times, and the pending trigger is kept."""
    if update.schedule is None or current is None or current == loaded:
        return update
    if current.pending_trigger is not Trigger.WEBHOOK:
        return update
    due = min(update.schedule.next_sync_at, current.due)
    return replace(update, schedule=replace(update.schedule, next_sync_at=due), keep_pending=True)


def _attempt_record(
    state: PairState, verdict: Verdict, now: datetime, settings: Settings
) -> AttemptRecord:
    saved = _savings(state, verdict, now, settings)
    outcome = verdict.outcome
    return AttemptRecord(
        user_id=state.user_id,
        integration_type=state.integration,
        trigger=verdict.trigger,
        result=verdict.result,
        created_at=to_iso(now),
        sync_type=outcome.sync_type if outcome else None,
        skip_reason=verdict.skip_reason,
        duration_ms=verdict.duration_ms,
        items_processed=outcome.items_processed if outcome else 0,
        items_added=outcome.added if outcome else 0,
        items_updated=outcome.updated if outcome else 0,
        items_deleted=outcome.deleted if outcome else 0,
        full_resync=bool(outcome and outcome.full_resync),
        breaker_trial=verdict.single_probe,
        api_calls_made=verdict.calls_made,
        api_calls_saved=saved.calls,
        saved_by=saved.saved_by,
        error_class=verdict.error_class,
        error_message=verdict.error_message,
        calendar_list_skipped=verdict.calendar_list_skipped,
        overhead_calls=verdict.overhead_calls,
    )


def _savings(
    state: PairState, verdict: Verdict, now: datetime, settings: Settings
) -> savings.Savings:
    """The calls this attempt saved against naive polling over the stretch it accounts for."""
    stretch = None
    if verdict.trigger is not Trigger.MANUAL:
        stretch = savings.Stretch(state.first_attempt_at or now, state.previous_attempt_at, now)
    schedule = state.schedule
    shaped = False
    if schedule is not None:
        adaptive = schedule_policy.adaptive_interval(
            state.integration,
            schedule.default_frequency_seconds,
            schedule.consecutive_no_changes,
            settings,
        )
        shaped = schedule.current_frequency_seconds > adaptive
    outcome = verdict.outcome
    return savings.estimate_saved(
        verdict.ending,
        integration=state.integration,
        trigger=verdict.trigger,
        stretch=stretch,
        default_seconds=_default_seconds(state, settings),
        calls_made=verdict.calls_made,
        overhead_calls=verdict.overhead_calls,
        settings=settings,
        single_probe=verdict.single_probe,
        breaker_trial=verdict.trial,
        webhook_shaped=shaped,
        own_is_a_poll=verdict.trigger is Trigger.SCHEDULED
        and outcome is not None
        and outcome.sync_type is SyncType.INCREMENTAL,
        calendar_list_skipped=verdict.calendar_list_skipped,
        recent_calls_per_sync=savings.typical_calls(
            [savings.poll_equivalent(*poll) for poll in state.recent_poll_calls]
        ),
        recent_calls_per_failure=state.recent_calls_per_failure,
        unchanged_calls=savings.unchanged_poll_reads(state.integration, state.mirrored_calendars),
    )


def _default_seconds(state: PairState, settings: Settings) -> int:
    if state.schedule is not None:
        return state.schedule.default_frequency_seconds
    return settings.interval_for(state.integration)


def _token_health(
    state: PairState, verdict: Verdict
) -> tuple[TokenHealthUpdate | None, Notice | None]:
    check = verdict.token_check
    if check is None:
        return None, None
    # invalid_grant revokes the whole grant; a 401 a refresh cannot cure or a missing scope
    # revokes this pair only. Either way only a reconnect cures it.
    covered = state.user_integrations if verdict.grant_revoked else (state.integration,)
    return token_health.after_check(
        state.user_id,
        covered,
        check,
        verdict.error_message,
        state.token_status,
        notice_open=state.reconnect_notice_open,
    )


def _breaker(
    state: PairState, verdict: Verdict, now: datetime, settings: Settings
) -> BreakerRecord | None:
    breaker = verdict.admitted
    if breaker is None:  # gated before the breaker admitted anything: nothing changes
        return None
    if verdict.result is Result.SUCCESS:
        return breaker_policy.on_success(breaker, now)
    if verdict.error_class and routing.route(verdict.error_class).counts_for_breaker:
        reason = f"{routing.route(verdict.error_class).reason}: {verdict.error_message}"
        return breaker_policy.on_failure(
            breaker, now, reason, settings, default_interval=_default_seconds(state, settings)
        )
    return breaker


def _schedule(
    state: PairState,
    verdict: Verdict,
    breaker: BreakerRecord | None,
    now: datetime,
    settings: Settings,
) -> tuple[ScheduleRecord | None, bool]:
    schedule = state.schedule
    if schedule is None or verdict.trigger is Trigger.MANUAL:  # manual syncs never move it
        return None, True
    ending = verdict.ending
    updated = schedule_policy.update_schedule(
        schedule,
        ending,
        integration=state.integration,
        trigger=verdict.trigger,
        now=now,
        settings=settings,
        retry_after=verdict.retry_after,
        channel_live=verdict.channel_live,
        failure_count=breaker.failure_count if breaker is not None else 1,
        breaker_retry_at=_retry_at(breaker if breaker is not None else state.breaker),
        renew_by=verdict.renew_by,
        notified_only=verdict.notified_only,
        list_refreshed_at=verdict.list_refreshed_at,
    )
    # A webhook trigger stays pending until an attempt moves the pair on.
    # (An open pair waits for its breaker's next_retry_at: not due while open.)
    consumed = ending in CONSUMING_OUTCOMES
    if updated == schedule and not consumed:
        return None, True
    return updated, not consumed


def _retry_at(breaker: BreakerRecord) -> datetime | None:
    """When a pair whose breaker is not closed may be tried again (None: it is closed)."""
    return None if breaker.state is BreakerState.CLOSED else breaker.next_retry_at
