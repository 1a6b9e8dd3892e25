"""Adaptive schedule policy (SPEC 3.5 and the outcome rules for `next_sync_at`)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import DAY, HOUR, Settings
from syncctl.model import Integration, Trigger
from syncctl.policy.schedule import (
    Outcome,
    ScheduleRecord,
    adaptive_interval,
    after_change,
    after_circuit_open,
    after_invalid_token,
    after_no_change,
    after_quota_failure,
    after_transient_failure,
    failure_backoff_seconds,
    initial_schedule,
    interval_cap,
    is_due,
    on_webhook_notification,
    polling_interval_with_live_channel,
    update_schedule,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
CAL = Integration.CALENDAR
CON = Integration.CONTACTS
LAST = NOW - timedelta(hours=4)
CALENDAR = ScheduleRecord(4 * HOUR, 4 * HOUR, 0, LAST, NOW)


def _at(seconds: int) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("integration", "settings", "interval"),
    [
        pytest.param(CON, SETTINGS, 3 * DAY, id="contacts-every-3-days"),
        pytest.param(CAL, SETTINGS, 4 * HOUR, id="calendar-every-4-hours"),
        pytest.param(CON, Settings(contacts_interval_seconds=10 * DAY), 6 * DAY, id="contacts<7d"),
    ],
)
def test_new_pair_is_due_now_at_default_interval(
    integration: Integration, settings: Settings, interval: int
) -> None:
    record = initial_schedule(integration, NOW, settings)
    assert record == ScheduleRecord(settings.interval_for(integration), interval, 0, None, NOW)
    assert is_due(record.next_sync_at, NOW)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(NOW - timedelta(seconds=1), False, id="1s-before"),
        pytest.param(NOW, True, id="exactly-at-next-sync"),
        pytest.param(NOW + timedelta(days=1), True, id="overdue"),
    ],
)
def test_due_from_next_sync_at_on(at: datetime, expected: bool) -> None:
    assert is_due(CALENDAR.next_sync_at, at) is expected


@pytest.mark.parametrize(
    ("integration", "default", "settings", "cap"),
    [
        pytest.param(CAL, 4 * HOUR, SETTINGS, 8 * HOUR, id="calendar-2x"),
        pytest.param(CON, 3 * DAY, SETTINGS, 6 * DAY, id="contacts-2x-is-6d"),
        pytest.param(CON, 4 * DAY, SETTINGS, 6 * DAY, id="contacts-8d-held-below-7d"),
        pytest.param(CON, 10 * DAY, SETTINGS, 6 * DAY, id="contacts-default-over-lifetime"),
        pytest.param(
            CON,
            4 * DAY,
            Settings(people_sync_token_lifetime_seconds=14 * DAY),
            8 * DAY,
            id="contacts-longer-lifetime",
        ),
        pytest.param(CAL, 4 * HOUR, Settings(interval_cap_multiplier=4), 16 * HOUR, id="cal-4x"),
    ],
)
def test_interval_cap(integration: Integration, default: int, settings: Settings, cap: int) -> None:
    assert interval_cap(integration, default, settings) == cap
    if integration is CON:
        assert cap < settings.people_sync_token_lifetime_seconds


CAP4 = Settings(interval_cap_multiplier=4)


@pytest.mark.parametrize(
    ("integration", "default", "no_changes", "settings", "interval"),
    [
        pytest.param(CAL, 4 * HOUR, 0, SETTINGS, 4 * HOUR, id="cal-0"),
        pytest.param(CAL, 4 * HOUR, 4, SETTINGS, 4 * HOUR, id="cal-4th-no-change"),
        pytest.param(CAL, 4 * HOUR, 5, SETTINGS, 8 * HOUR, id="cal-5th-no-change-doubles"),
        pytest.param(CAL, 4 * HOUR, 6, SETTINGS, 8 * HOUR, id="cal-6th"),
        pytest.param(CAL, 4 * HOUR, 10, SETTINGS, 8 * HOUR, id="cal-10th-cap-reached"),
        pytest.param(CAL, 4 * HOUR, 9, CAP4, 8 * HOUR, id="cap4-9th"),
        pytest.param(CAL, 4 * HOUR, 10, CAP4, 16 * HOUR, id="cap4-10th-doubles-again"),
        pytest.param(CAL, 4 * HOUR, 15, CAP4, 16 * HOUR, id="cap4-15th-cap-reached"),
        pytest.param(CAL, 4 * HOUR, 10**9, CAP4, 16 * HOUR, id="cap4-huge-count"),
        pytest.param(CAL, 4 * HOUR, 10, Settings(no_change_threshold=10), 8 * HOUR, id="thr10"),
        pytest.param(CON, 3 * DAY, 4, SETTINGS, 3 * DAY, id="con-4th"),
        pytest.param(CON, 3 * DAY, 5, SETTINGS, 6 * DAY, id="con-5th-6d"),
        pytest.param(CON, 4 * DAY, 5, SETTINGS, 6 * DAY, id="con-4d-5th-held-below-7d"),
        pytest.param(CON, 3 * DAY, 50, CAP4, 6 * DAY, id="con-cap4-held-below-7d"),
    ],
)
def test_adaptive_interval(
    integration: Integration, default: int, no_changes: int, settings: Settings, interval: int
) -> None:
    assert adaptive_interval(integration, default, no_changes, settings) == interval


def _run(record: ScheduleRecord, integration: Integration, outcomes: str) -> ScheduleRecord:
    """Apply scheduled successes, each at the record's next_sync_at: N = no change, C = change."""
    for letter in outcomes:
        step = after_no_change if letter == "N" else after_change
        record = step(record, integration, record.next_sync_at, SETTINGS)
    return record


@pytest.mark.parametrize(
    ("integration", "outcomes", "no_changes", "interval"),
    [
        pytest.param(CAL, "C", 0, 4 * HOUR, id="change"),
        pytest.param(CAL, "NNNN", 4, 4 * HOUR, id="4-no-changes-keep-default"),
        pytest.param(CAL, "NNNNN", 5, 8 * HOUR, id="5th-no-change-doubles"),
        pytest.param(CAL, "NNNNNN", 6, 8 * HOUR, id="6th-no-change-stays-at-cap"),
        pytest.param(CAL, "NNNNNC", 0, 4 * HOUR, id="change-on-6th-restores-default"),
        pytest.param(CAL, "NNNNCNNNN", 4, 4 * HOUR, id="count-restarts-after-change"),
        pytest.param(CAL, "N" * 12, 12, 8 * HOUR, id="12-no-changes-capped"),
        pytest.param(CON, "NNNNN", 5, 6 * DAY, id="contacts-5th-6-days"),
    ],
)
def test_scheduled_successes_back_off_and_change_restores(
    integration: Integration, outcomes: str, no_changes: int, interval: int
) -> None:
    start = initial_schedule(integration, NOW, SETTINGS)
    record = _run(start, integration, outcomes)
    assert (record.consecutive_no_changes, record.current_frequency_seconds) == (
        no_changes,
        interval,
    )
    assert record.default_frequency_seconds == start.default_frequency_seconds
    assert record.next_sync_at == record.last_sync_at + timedelta(seconds=interval)


@pytest.mark.parametrize("step", [after_change, after_no_change])
def test_success_sets_last_sync_now_and_next_one_interval_later(step) -> None:
    record = step(CALENDAR, CAL, NOW, SETTINGS)
    assert (record.last_sync_at, record.next_sync_at) == (NOW, NOW + timedelta(hours=4))


@pytest.mark.parametrize(
    ("integration", "step", "no_changes_before", "no_changes", "interval"),
    [
        pytest.param(CAL, after_change, 3, 0, 24 * HOUR, id="calendar-change-relaxed-to-24h"),
        pytest.param(CAL, after_no_change, 0, 1, 48 * HOUR, id="calendar-no-change-backs-off"),
        pytest.param(CAL, after_no_change, 1, 2, 96 * HOUR, id="calendar-2nd-doubles-again"),
        pytest.param(CAL, after_no_change, 4, 5, 7 * DAY, id="calendar-capped-at-the-ttl"),
        pytest.param(CON, after_no_change, 4, 5, 6 * DAY, id="contacts-ignore-channels"),
    ],
)
def test_live_channel_relaxes_calendar_polling_and_counter_keeps_counting(
    integration: Integration, step, no_changes_before: int, no_changes: int, interval: int
) -> None:
    record = replace(
        initial_schedule(integration, NOW, SETTINGS), consecutive_no_changes=no_changes_before
    )
    record = step(record, integration, NOW, SETTINGS, channel_live=True)
    assert (record.consecutive_no_changes, record.current_frequency_seconds) == (
        no_changes,
        interval,
    )
    assert record.next_sync_at == NOW + timedelta(seconds=interval)


@pytest.mark.parametrize(
    ("adaptive", "settings", "expected"),
    [
        pytest.param(4 * HOUR, SETTINGS, 24 * HOUR, id="default-to-safety"),
        pytest.param(8 * HOUR, SETTINGS, 24 * HOUR, id="backed-off-to-safety"),
        pytest.param(48 * HOUR, SETTINGS, 48 * HOUR, id="never-tighter-than-adaptive"),
        pytest.param(
            4 * HOUR, Settings(webhook_safety_interval_seconds=12 * HOUR), 12 * HOUR, id="setting"
        ),
    ],
)
def test_polling_interval_with_live_channel(
    adaptive: int, settings: Settings, expected: int
) -> None:
    assert polling_interval_with_live_channel(adaptive, settings) == expected


@pytest.mark.parametrize(
    ("record", "expected_next"),
    [
        pytest.param(CALENDAR, NOW + timedelta(hours=4), id="advanced-by-default"),
        pytest.param(
            replace(CALENDAR, current_frequency_seconds=8 * HOUR, consecutive_no_changes=5),
            NOW + timedelta(hours=8),
            id="advanced-by-backed-off-interval",
        ),
        pytest.param(
            replace(CALENDAR, current_frequency_seconds=7 * DAY, consecutive_no_changes=9),
            NOW + timedelta(hours=8),
            id="relaxed-push-interval-no-longer-applies",
        ),
    ],
)
def test_invalid_token_skip_advances_by_current_interval_to_the_adaptive_cap(
    record: ScheduleRecord, expected_next: datetime
) -> None:
    skipped = after_invalid_token(record, NOW, Integration.CALENDAR, SETTINGS)
    assert skipped == replace(record, next_sync_at=expected_next)


@pytest.mark.parametrize(
    ("failure_count", "interval", "delay"),
    [
        pytest.param(1, 4 * HOUR, 300, id="first-failure-5-min"),
        pytest.param(2, 4 * HOUR, 600, id="second-10-min"),
        pytest.param(3, 4 * HOUR, 1200, id="third-20-min"),
        pytest.param(6, 4 * HOUR, 9600, id="sixth-160-min"),
        pytest.param(7, 4 * HOUR, 4 * HOUR, id="never-later-than-the-interval"),
        pytest.param(40, 4 * HOUR, 4 * HOUR, id="many-stays-at-the-interval"),
        pytest.param(1, 120, 120, id="interval-shorter-than-the-backoff"),
        pytest.param(0, 4 * HOUR, 300, id="zero-count-as-first"),
    ],
)
def test_transient_failure_retries_after_a_doubling_backoff_capped_by_the_interval(
    failure_count: int, interval: int, delay: int
) -> None:
    record = replace(CALENDAR, current_frequency_seconds=interval)
    assert failure_backoff_seconds(failure_count, interval, SETTINGS) == delay
    retried = after_transient_failure(record, NOW, SETTINGS, failure_count=failure_count)
    assert retried == replace(record, next_sync_at=_at(delay))
    assert not is_due(retried.next_sync_at, NOW)


def test_an_open_breaker_makes_the_pair_due_at_its_retry_time() -> None:
    retry_at = NOW + timedelta(hours=2)
    failed = after_transient_failure(
        CALENDAR, NOW, SETTINGS, failure_count=4, breaker_retry_at=retry_at
    )
    assert failed == replace(CALENDAR, next_sync_at=retry_at)
    assert after_circuit_open(CALENDAR, retry_at) == replace(CALENDAR, next_sync_at=retry_at)
    assert after_circuit_open(CALENDAR) is CALENDAR


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [
        pytest.param(None, 900, id="no-retry-after-default-15m"),
        pytest.param(30.0, 30, id="retry-after-30s"),
        pytest.param(29.2, 30, id="fraction-rounded-up"),
        pytest.param(0.0, 0, id="zero"),
        pytest.param(-5.0, 0, id="negative-clamped"),
        pytest.param(7200.0, 7200, id="long-retry-after-honoured"),
    ],
)
def test_quota_failure_defers_by_retry_after_or_default(
    retry_after: float | None, delay: int
) -> None:
    deferred = after_quota_failure(CALENDAR, NOW, SETTINGS, retry_after)
    assert deferred == replace(CALENDAR, next_sync_at=_at(delay))


@pytest.mark.parametrize(
    ("next_sync_at", "expected_next"),
    [
        pytest.param(NOW + timedelta(hours=3), NOW, id="future-becomes-now"),
        pytest.param(NOW - timedelta(hours=1), NOW - timedelta(hours=1), id="overdue-stays"),
        pytest.param(NOW, NOW, id="exactly-now"),
    ],
)
def test_webhook_notification_makes_pair_due_now(
    next_sync_at: datetime, expected_next: datetime
) -> None:
    record = on_webhook_notification(replace(CALENDAR, next_sync_at=next_sync_at), NOW)
    assert record == replace(CALENDAR, next_sync_at=expected_next)
    assert is_due(record.next_sync_at, NOW)


BACKED_OFF = ScheduleRecord(4 * HOUR, 8 * HOUR, 5, NOW - timedelta(hours=8), NOW)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        pytest.param(
            Outcome.CHANGED,
            ScheduleRecord(4 * HOUR, 4 * HOUR, 0, NOW, _at(4 * HOUR)),
            id="changed",
        ),
        pytest.param(
            Outcome.UNCHANGED,
            ScheduleRecord(4 * HOUR, 8 * HOUR, 6, NOW, _at(8 * HOUR)),
            id="unchanged",
        ),
        pytest.param(
            Outcome.INVALID_TOKEN, replace(BACKED_OFF, next_sync_at=_at(8 * HOUR)), id="skip-token"
        ),
        pytest.param(
            Outcome.AUTH_FAILURE, replace(BACKED_OFF, next_sync_at=_at(8 * HOUR)), id="auth-fail"
        ),
        pytest.param(Outcome.CIRCUIT_OPEN, BACKED_OFF, id="skip-circuit-open"),
        pytest.param(
            Outcome.TRANSIENT_FAILURE,
            replace(BACKED_OFF, next_sync_at=_at(300)),
            id="transient-failure",
        ),
        pytest.param(Outcome.CLIENT_FAILURE, BACKED_OFF, id="client-failure-stays-due"),
        pytest.param(Outcome.QUOTA_FAILURE, replace(BACKED_OFF, next_sync_at=_at(60)), id="quota"),
    ],
)
def test_update_schedule_applies_the_rule_of_each_outcome(
    outcome: Outcome, expected: ScheduleRecord
) -> None:
    for trigger in (Trigger.SCHEDULED, Trigger.WEBHOOK):
        updated = update_schedule(
            BACKED_OFF,
            outcome,
            integration=CAL,
            trigger=trigger,
            now=NOW,
            settings=SETTINGS,
            retry_after=60.0,
        )
        assert updated == expected


@pytest.mark.parametrize("outcome", list(Outcome))
def test_manual_sync_never_changes_the_schedule(outcome: Outcome) -> None:
    updated = update_schedule(
        BACKED_OFF,
        outcome,
        integration=CAL,
        trigger=Trigger.MANUAL,
        now=NOW,
        settings=SETTINGS,
        retry_after=60.0,
    )
    assert updated is BACKED_OFF


@pytest.mark.parametrize(
    ("integration", "record", "interval"),
    [
        pytest.param(CAL, CALENDAR, 48 * HOUR, id="calendar-relaxed-and-backed-off"),
        pytest.param(
            CON, ScheduleRecord(3 * DAY, 3 * DAY, 4, LAST, NOW), 6 * DAY, id="contacts-adaptive"
        ),
    ],
)
def test_update_schedule_passes_integration_and_channel_through(
    integration: Integration, record: ScheduleRecord, interval: int
) -> None:
    updated = update_schedule(
        record,
        Outcome.UNCHANGED,
        integration=integration,
        trigger=Trigger.SCHEDULED,
        now=NOW,
        settings=SETTINGS,
        channel_live=True,
    )
    assert updated.current_frequency_seconds == interval
