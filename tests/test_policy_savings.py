"""Savings estimate: calls avoided against the naive poller, credited to one mechanism."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import DAY, HOUR, Settings
from syncctl.model import Integration, SavedBy, Trigger
from syncctl.policy.savings import (
    FALLBACK_CALLS_PER_SYNC,
    NOTHING,
    Savings,
    calls_per_sync,
    estimate_saved,
)
from syncctl.policy.schedule import Outcome, ScheduleRecord, after_no_change, initial_schedule

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
CAL = Integration.CALENDAR
CON = Integration.CONTACTS


def _calendar(current: int, no_changes: int = 0, since_last: int | None = None) -> ScheduleRecord:
    last = NOW - timedelta(seconds=current if since_last is None else since_last)
    return ScheduleRecord(4 * HOUR, current, no_changes, last, NOW)


DEFAULT = _calendar(4 * HOUR)
BACKED_OFF = _calendar(8 * HOUR, no_changes=5)
RELAXED = _calendar(24 * HOUR)  # a live channel relaxed polling to the 24 h safety interval
CONTACTS_BACKED_OFF = ScheduleRecord(3 * DAY, 6 * DAY, 5, NOW - timedelta(days=6), NOW)
FIRST = replace(DEFAULT, last_sync_at=None)


@pytest.mark.parametrize(
    ("integration", "recent", "expected"),
    [
        pytest.param(CON, None, 3.0, id="contacts-fallback"),
        pytest.param(CAL, None, 5.0, id="calendar-fallback"),
        pytest.param(CAL, 0.0, 5.0, id="zero-history-falls-back"),
        pytest.param(CAL, 7.5, 7.5, id="recent-mean"),
    ],
)
def test_calls_per_sync_from_history_or_fallback(
    integration: Integration, recent: float | None, expected: float
) -> None:
    assert calls_per_sync(integration, recent) == expected
    assert FALLBACK_CALLS_PER_SYNC[integration] == {CON: 3, CAL: 5}[integration]


@pytest.mark.parametrize(
    ("schedule", "trigger", "now", "recent", "expected"),
    [
        pytest.param(FIRST, Trigger.SCHEDULED, NOW, 5.0, NOTHING, id="first-sync-saves-nothing"),
        pytest.param(DEFAULT, Trigger.SCHEDULED, NOW, 5.0, NOTHING, id="default-interval"),
        pytest.param(
            BACKED_OFF,
            Trigger.SCHEDULED,
            NOW,
            5.0,
            Savings(5, SavedBy.ADAPTIVE_SCHEDULE),
            id="doubled-interval-saves-one-poll",
        ),
        pytest.param(
            BACKED_OFF,
            Trigger.SCHEDULED,
            NOW + timedelta(minutes=10),
            5.0,
            Savings(5, SavedBy.ADAPTIVE_SCHEDULE),
            id="late-run-capped-at-interval",
        ),
        pytest.param(
            BACKED_OFF,
            Trigger.SCHEDULED,
            NOW,
            None,
            Savings(5, SavedBy.ADAPTIVE_SCHEDULE),
            id="no-history-uses-fallback",
        ),
        pytest.param(
            BACKED_OFF,
            Trigger.SCHEDULED,
            NOW,
            7.3,
            Savings(7, SavedBy.ADAPTIVE_SCHEDULE),
            id="rounded-to-whole-calls",
        ),
        pytest.param(
            CONTACTS_BACKED_OFF,
            Trigger.SCHEDULED,
            NOW,
            None,
            Savings(3, SavedBy.ADAPTIVE_SCHEDULE),
            id="contacts-6d-over-3d",
        ),
        pytest.param(
            RELAXED,
            Trigger.SCHEDULED,
            NOW,
            5.0,
            Savings(25, SavedBy.WEBHOOK),
            id="safety-poll-saves-5-polls",
        ),
        pytest.param(
            _calendar(24 * HOUR, since_last=8 * HOUR),
            Trigger.WEBHOOK,
            NOW,
            5.0,
            Savings(5, SavedBy.WEBHOOK),
            id="webhook-sync-after-8h",
        ),
        pytest.param(
            _calendar(24 * HOUR, since_last=HOUR),
            Trigger.WEBHOOK,
            NOW,
            5.0,
            Savings(-4, SavedBy.WEBHOOK),
            id="webhook-sync-after-1h-costs-calls",
        ),
        pytest.param(
            _calendar(4 * HOUR, since_last=2 * HOUR),
            Trigger.WEBHOOK,
            NOW,
            5.0,
            Savings(-2, SavedBy.WEBHOOK),
            id="half-rounds-up",
        ),
        pytest.param(
            _calendar(4 * HOUR, since_last=4 * HOUR),
            Trigger.WEBHOOK,
            NOW,
            5.0,
            NOTHING,
            id="webhook-sync-after-default",
        ),
        pytest.param(BACKED_OFF, Trigger.MANUAL, NOW, 5.0, NOTHING, id="manual-saves-nothing"),
    ],
)
@pytest.mark.parametrize("outcome", [Outcome.CHANGED, Outcome.UNCHANGED])
def test_success_saves_polls_of_the_stretched_interval(
    outcome: Outcome,
    schedule: ScheduleRecord,
    trigger: Trigger,
    now: datetime,
    recent: float | None,
    expected: Savings,
) -> None:
    saved = estimate_saved(
        outcome,
        integration=CON if schedule is CONTACTS_BACKED_OFF else CAL,
        trigger=trigger,
        schedule=schedule,
        now=now,
        settings=SETTINGS,
        recent_calls_per_sync=recent,
        calls_made=5,
    )
    assert saved == expected


@pytest.mark.parametrize(
    ("schedule", "trigger", "calls_made", "expected"),
    [
        pytest.param(DEFAULT, Trigger.SCHEDULED, 0, 1, id="one-failing-refresh-per-slot"),
        pytest.param(BACKED_OFF, Trigger.SCHEDULED, 0, 2, id="doubled-slot-two-polls"),
        pytest.param(RELAXED, Trigger.SCHEDULED, 0, 6, id="24h-slot-six-polls"),
        pytest.param(DEFAULT, Trigger.SCHEDULED, 1, 0, id="the-refresh-that-found-revocation"),
        pytest.param(BACKED_OFF, Trigger.SCHEDULED, 1, 1, id="found-revocation-doubled-slot"),
        pytest.param(BACKED_OFF, Trigger.MANUAL, 0, 1, id="manual-one-attempt"),
        pytest.param(BACKED_OFF, Trigger.MANUAL, 1, 0, id="manual-found-revocation"),
        pytest.param(None, Trigger.MANUAL, 0, 1, id="manual-unscheduled-pair"),
    ],
)
def test_invalid_token_skip_saves_failing_refreshes(
    schedule: ScheduleRecord | None, trigger: Trigger, calls_made: int, expected: int
) -> None:
    saved = estimate_saved(
        Outcome.INVALID_TOKEN,
        integration=CAL,
        trigger=trigger,
        schedule=schedule,
        now=NOW,
        settings=SETTINGS,
        recent_calls_per_sync=20.0,  # a full request set is not what a revoked grant costs
        calls_made=calls_made,
    )
    assert saved == (Savings(expected, SavedBy.TOKEN_HEALTH) if expected else NOTHING)


@pytest.mark.parametrize(
    ("recent_failure_calls", "settings", "expected"),
    [
        pytest.param(None, SETTINGS, 5, id="fallback-retry-max-attempts"),
        pytest.param(None, Settings(retry_max_attempts=3), 3, id="fallback-follows-setting"),
        pytest.param(6.4, SETTINGS, 6, id="recent-mean-rounded-down"),
        pytest.param(6.5, SETTINGS, 7, id="recent-mean-half-up"),
    ],
)
@pytest.mark.parametrize("trigger", [Trigger.SCHEDULED, Trigger.MANUAL])
def test_circuit_open_skip_saves_the_failing_attempt(
    trigger: Trigger, recent_failure_calls: float | None, settings: Settings, expected: int
) -> None:
    saved = estimate_saved(
        Outcome.CIRCUIT_OPEN,
        integration=CAL,
        trigger=trigger,
        schedule=BACKED_OFF,
        now=NOW,
        settings=settings,
        recent_calls_per_failure=recent_failure_calls,
    )
    assert saved == Savings(expected, SavedBy.CIRCUIT_BREAKER)


@pytest.mark.parametrize(
    ("recent_failure_calls", "calls_made", "expected"),
    [
        pytest.param(None, 1, Savings(4, SavedBy.CIRCUIT_BREAKER), id="probe-vs-5-retries"),
        pytest.param(6.0, 2, Savings(4, SavedBy.CIRCUIT_BREAKER), id="probe-vs-recent-mean"),
        pytest.param(1.0, 1, NOTHING, id="no-cheaper-than-a-full-attempt"),
        pytest.param(2.0, 3, NOTHING, id="never-negative"),
    ],
)
def test_failed_breaker_trial_saves_the_retries_it_did_not_send(
    recent_failure_calls: float | None, calls_made: int, expected: Savings
) -> None:
    saved = estimate_saved(
        Outcome.TRANSIENT_FAILURE,
        integration=CAL,
        trigger=Trigger.SCHEDULED,
        schedule=BACKED_OFF,
        now=NOW,
        settings=SETTINGS,
        recent_calls_per_failure=recent_failure_calls,
        calls_made=calls_made,
        breaker_trial=True,
    )
    assert saved == expected


@pytest.mark.parametrize(
    "outcome", [Outcome.TRANSIENT_FAILURE, Outcome.QUOTA_FAILURE, Outcome.AUTH_FAILURE]
)
@pytest.mark.parametrize("trigger", list(Trigger))
def test_failures_save_nothing(outcome: Outcome, trigger: Trigger) -> None:
    saved = estimate_saved(
        outcome,
        integration=CAL,
        trigger=trigger,
        schedule=RELAXED,
        now=NOW,
        settings=SETTINGS,
        calls_made=5,
    )
    assert saved == NOTHING


@pytest.mark.parametrize(
    ("integration", "syncs"),
    [(CAL, 4), (CAL, 5), (CAL, 23), (CON, 17)],
)
def test_adaptive_claims_add_up_to_naive_minus_orchestrated(
    integration: Integration, syncs: int
) -> None:
    # GIVEN a quiet pair synced at each scheduled time, every sync costing c calls
    c = 4
    record = after_no_change(
        initial_schedule(integration, NOW, SETTINGS), integration, NOW, SETTINGS
    )
    first = record.last_sync_at
    claimed = 0
    for _ in range(syncs):
        at = record.next_sync_at
        claimed += estimate_saved(
            Outcome.UNCHANGED,
            integration=integration,
            trigger=Trigger.SCHEDULED,
            schedule=record,
            now=at,
            settings=SETTINGS,
            recent_calls_per_sync=c,
        ).calls
        record = after_no_change(record, integration, at, SETTINGS)
    # THEN the claims equal what a poller at the default interval would have sent, minus ours
    span = (record.last_sync_at - first).total_seconds()
    naive_polls = span / record.default_frequency_seconds
    assert claimed == c * naive_polls - c * syncs


@pytest.mark.parametrize("outcome", [Outcome.CHANGED, Outcome.UNCHANGED])
def test_success_of_unscheduled_pair_saves_nothing(outcome: Outcome) -> None:
    saved = estimate_saved(
        outcome,
        integration=CAL,
        trigger=Trigger.SCHEDULED,
        schedule=None,
        now=NOW,
        settings=SETTINGS,
    )
    assert saved == NOTHING
