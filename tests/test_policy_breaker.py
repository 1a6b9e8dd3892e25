"""Circuit breaker policy (SPEC 3.2): open at 3 in a row, skip for an hour, one half-open trial."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import Settings
from syncctl.model import BreakerState, SkipReason
from syncctl.policy.breaker import (
    Admission,
    BreakerRecord,
    allow_attempt,
    on_failure,
    on_success,
    open_window_seconds,
    reset,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SETTINGS = Settings()
OPENED = NOW - HOUR
OPEN = BreakerRecord(
    state=BreakerState.OPEN,
    failure_count=3,
    last_failure_at=OPENED,
    last_failure_reason="transient",
    opened_at=OPENED,
    next_retry_at=NOW,
)
HALF_OPEN = replace(OPEN, state=BreakerState.HALF_OPEN, next_retry_at=NOW + HOUR)


@pytest.mark.parametrize(
    ("record", "at", "expected"),
    [
        pytest.param(BreakerRecord(), NOW, Admission(True, BreakerRecord()), id="closed-admits"),
        pytest.param(
            OPEN,
            NOW - timedelta(seconds=1),
            Admission(False, OPEN, SkipReason.CIRCUIT_OPEN),
            id="open-59m59s-skips",
        ),
        pytest.param(
            OPEN,
            NOW,
            Admission(True, replace(OPEN, state=BreakerState.HALF_OPEN, next_retry_at=NOW + HOUR)),
            id="open-exactly-1h-admits-trial",
        ),
        pytest.param(
            OPEN,
            NOW + timedelta(hours=5),
            Admission(
                True,
                replace(OPEN, state=BreakerState.HALF_OPEN, next_retry_at=NOW + timedelta(hours=6)),
            ),
            id="open-long-after-admits-trial",
        ),
        pytest.param(
            HALF_OPEN,
            NOW + timedelta(minutes=30),
            Admission(False, HALF_OPEN, SkipReason.CIRCUIT_OPEN),
            id="half-open-trial-running-skips-others",
        ),
        pytest.param(
            HALF_OPEN,
            NOW + HOUR,
            Admission(True, replace(HALF_OPEN, next_retry_at=NOW + 2 * HOUR)),
            id="half-open-lease-expired-admits-new-trial",
        ),
        pytest.param(
            replace(OPEN, next_retry_at=None),
            NOW,
            Admission(True, replace(OPEN, state=BreakerState.HALF_OPEN, next_retry_at=NOW + HOUR)),
            id="open-without-retry-time-admits-trial",
        ),
    ],
)
def test_admission_by_state_and_time(
    record: BreakerRecord, at: datetime, expected: Admission
) -> None:
    assert allow_attempt(record, at, SETTINGS) == expected


@pytest.mark.parametrize(
    ("record", "expected_trial"),
    [(BreakerRecord(), False), (OPEN, True)],
)
def test_admission_says_whether_it_is_the_trial(
    record: BreakerRecord, expected_trial: bool
) -> None:
    assert allow_attempt(record, NOW, SETTINGS).trial is expected_trial


def _closed_with(count: int) -> BreakerRecord:
    return BreakerRecord(failure_count=count) if count else BreakerRecord()


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param(
            _closed_with(0),
            BreakerRecord(failure_count=1, last_failure_at=NOW, last_failure_reason="boom"),
            id="1st-failure-stays-closed",
        ),
        pytest.param(
            _closed_with(1),
            BreakerRecord(failure_count=2, last_failure_at=NOW, last_failure_reason="boom"),
            id="2nd-failure-stays-closed",
        ),
        pytest.param(
            _closed_with(2),
            BreakerRecord(
                state=BreakerState.OPEN,
                failure_count=3,
                last_failure_at=NOW,
                last_failure_reason="boom",
                opened_at=NOW,
                next_retry_at=NOW + HOUR,
            ),
            id="3rd-failure-opens-for-1h",
        ),
        pytest.param(
            HALF_OPEN,
            BreakerRecord(
                state=BreakerState.OPEN,
                failure_count=4,
                last_failure_at=NOW,
                last_failure_reason="boom",
                opened_at=NOW,
                next_retry_at=NOW + HOUR,
            ),
            id="half-open-trial-failure-reopens-for-another-hour",
        ),
        pytest.param(
            replace(OPEN, next_retry_at=NOW + timedelta(minutes=10)),
            replace(
                OPEN,
                failure_count=4,
                last_failure_at=NOW,
                last_failure_reason="boom",
                next_retry_at=NOW + timedelta(minutes=10),
            ),
            id="late-failure-while-open-keeps-window",
        ),
    ],
)
def test_failure_transitions(record: BreakerRecord, expected: BreakerRecord) -> None:
    assert on_failure(record, NOW, "boom", SETTINGS) == expected


def test_threshold_and_open_period_come_from_settings() -> None:
    settings = Settings(breaker_failure_threshold=5, breaker_open_seconds=600)
    assert on_failure(_closed_with(3), NOW, "x", settings).state is BreakerState.CLOSED
    opened = on_failure(_closed_with(4), NOW, "x", settings)
    assert (opened.state, opened.next_retry_at) == (BreakerState.OPEN, NOW + timedelta(minutes=10))


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(_closed_with(2), id="closed-with-failures"),
        pytest.param(HALF_OPEN, id="half-open-trial-success"),
        pytest.param(OPEN, id="open"),
    ],
)
def test_success_closes_and_zeroes_count_keeping_history(record: BreakerRecord) -> None:
    assert on_success(record, NOW) == replace(
        record, state=BreakerState.CLOSED, failure_count=0, opened_at=None, next_retry_at=None
    )


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param(None, BreakerRecord(), id="fresh"),
        pytest.param(
            OPEN,
            BreakerRecord(last_failure_at=OPENED, last_failure_reason="transient"),
            id="open-is-closed-with-history",
        ),
    ],
)
def test_reset_closes_and_zeroes_count(
    record: BreakerRecord | None, expected: BreakerRecord
) -> None:
    assert reset(record) == expected


def test_outage_lifecycle_opens_skips_trials_reopens_and_closes() -> None:
    # GIVEN three transient failures in a row
    record = BreakerRecord()
    for minute in range(3):
        assert allow_attempt(record, NOW + timedelta(minutes=minute), SETTINGS).allowed
        record = on_failure(record, NOW + timedelta(minutes=minute), "503", SETTINGS)
    opened_at = NOW + timedelta(minutes=2)
    assert (record.state, record.next_retry_at) == (BreakerState.OPEN, opened_at + HOUR)
    # WHEN run-due comes back before the hour, THEN it is skipped
    assert not allow_attempt(record, opened_at + HOUR - timedelta(seconds=1), SETTINGS).allowed
    # WHEN the hour is up, THEN one trial runs; its failure re-opens for another hour
    trial = allow_attempt(record, opened_at + HOUR, SETTINGS)
    assert trial.trial
    record = on_failure(trial.record, opened_at + HOUR, "503", SETTINGS)
    assert (record.state, record.next_retry_at) == (BreakerState.OPEN, opened_at + 2 * HOUR)
    assert not allow_attempt(record, opened_at + 2 * HOUR - timedelta(seconds=1), SETTINGS).allowed
    # WHEN the next trial succeeds, THEN the breaker closes with a zero count
    trial = allow_attempt(record, opened_at + 2 * HOUR, SETTINGS)
    record = on_success(trial.record, opened_at + 2 * HOUR)
    assert (record.state, record.failure_count) == (BreakerState.CLOSED, 0)


CALENDAR_DEFAULT = 4 * 3600
CONTACTS_DEFAULT = 3 * 86400


@pytest.mark.parametrize(
    ("failure_count", "default_interval", "settings", "window_hours"),
    [
        pytest.param(3, CALENDAR_DEFAULT, SETTINGS, 1, id="opens-for-1h"),
        pytest.param(4, CALENDAR_DEFAULT, SETTINGS, 2, id="1st-failed-trial-2h"),
        pytest.param(5, CALENDAR_DEFAULT, SETTINGS, 4, id="2nd-failed-trial-4h-the-cap"),
        pytest.param(9, CALENDAR_DEFAULT, SETTINGS, 4, id="capped-at-calendar-interval"),
        pytest.param(9, CONTACTS_DEFAULT, SETTINGS, 64, id="contacts-keeps-doubling"),
        pytest.param(10, CONTACTS_DEFAULT, SETTINGS, 72, id="capped-at-contacts-interval"),
        pytest.param(
            6, CONTACTS_DEFAULT, Settings(breaker_max_open_seconds=3600), 1, id="flat-hour"
        ),
        pytest.param(
            8, CONTACTS_DEFAULT, Settings(breaker_max_open_seconds=5 * 3600), 5, id="cap-setting"
        ),
        pytest.param(5, None, SETTINGS, 1, id="no-interval-given-flat"),
    ],
)
def test_each_failed_trial_doubles_the_open_window_up_to_the_cap(
    failure_count: int, default_interval: int | None, settings: Settings, window_hours: int
) -> None:
    assert open_window_seconds(failure_count, settings, default_interval) == window_hours * 3600
    record = replace(HALF_OPEN, failure_count=failure_count - 1)
    reopened = on_failure(record, NOW, "503", settings, default_interval=default_interval)
    assert reopened.state is BreakerState.OPEN
    assert reopened.next_retry_at == NOW + window_hours * HOUR


def test_a_calendar_outage_is_probed_after_1h_2h_then_every_4h() -> None:
    record, at, retries = BreakerRecord(), NOW, []
    for _ in range(3):  # three failures in a row open it
        record = on_failure(record, at, "503", SETTINGS, default_interval=CALENDAR_DEFAULT)
    for _ in range(4):  # each failed trial re-opens it
        assert record.next_retry_at is not None
        retries.append((record.next_retry_at - at) / HOUR)
        at = record.next_retry_at
        trial = allow_attempt(record, at, SETTINGS)
        assert trial.trial
        record = on_failure(trial.record, at, "503", SETTINGS, default_interval=CALENDAR_DEFAULT)
    assert retries == [1, 2, 4, 4]
    # and a success closes it, so the next outage starts again at one hour
    record = on_success(allow_attempt(record, record.next_retry_at, SETTINGS).record, at)
    for _ in range(3):
        record = on_failure(record, at, "503", SETTINGS, default_interval=CALENDAR_DEFAULT)
    assert record.next_retry_at == at + HOUR
