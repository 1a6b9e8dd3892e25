"""policy/schedule.py under push: the safety poll backs off, renewals come just in time, and a
notified sync never pushes the safety poll later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import Settings
from syncctl.model import Integration, Trigger
from syncctl.policy.schedule import (
    Outcome,
    ScheduleRecord,
    after_notified_sync,
    before_renewal,
    polling_interval_with_live_channel,
    update_schedule,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = 3600
H = timedelta(hours=1)
SETTINGS = Settings()
CAL = Integration.CALENDAR


def record(no_changes: int = 0, current: int = 24 * HOUR, last: datetime | None = None):
    return ScheduleRecord(
        default_frequency_seconds=4 * HOUR,
        current_frequency_seconds=current,
        consecutive_no_changes=no_changes,
        last_sync_at=last,
        next_sync_at=NOW,
    )


@pytest.mark.parametrize(
    ("adaptive", "no_changes", "settings", "expected"),
    [
        pytest.param(4 * HOUR, 0, SETTINGS, 24 * HOUR, id="safety"),
        pytest.param(4 * HOUR, 1, SETTINGS, 48 * HOUR, id="1st-quiet-poll-doubles"),
        pytest.param(8 * HOUR, 2, SETTINGS, 96 * HOUR, id="2nd-doubles-again"),
        pytest.param(8 * HOUR, 3, SETTINGS, 7 * 24 * HOUR, id="3rd-reaches-the-channel-ttl"),
        pytest.param(8 * HOUR, 40, SETTINGS, 7 * 24 * HOUR, id="capped-at-the-ttl"),
        pytest.param(
            8 * HOUR,
            3,
            Settings(webhook_safety_max_seconds=72 * HOUR),
            72 * HOUR,
            id="cap-setting",
        ),
        pytest.param(
            8 * HOUR,
            3,
            Settings(webhook_safety_max_seconds=HOUR),
            24 * HOUR,
            id="cap-below-safety-is-the-safety-interval",
        ),
        pytest.param(8 * 24 * HOUR, 10, SETTINGS, 8 * 24 * HOUR, id="never-tighter-than-adaptive"),
    ],
)
def test_the_safety_poll_doubles_at_each_quiet_poll_up_to_the_channel_ttl(
    adaptive, no_changes, settings, expected
):
    assert polling_interval_with_live_channel(adaptive, settings, no_changes) == expected


@pytest.mark.parametrize(
    ("renew_by", "expected"),
    [
        (None, NOW + timedelta(hours=24)),
        (NOW + timedelta(hours=30), NOW + timedelta(hours=24)),
        (NOW + timedelta(hours=3), NOW + timedelta(hours=3)),
    ],
)
def test_a_sync_is_brought_forward_to_the_first_renewal(renew_by, expected):
    assert before_renewal(NOW + timedelta(hours=24), renew_by) == expected


@pytest.mark.parametrize("outcome", [Outcome.CHANGED, Outcome.UNCHANGED])
def test_a_scheduled_success_under_push_is_due_again_before_the_renewal(outcome):
    renew_by = NOW + timedelta(hours=5)
    updated = update_schedule(
        record(),
        outcome,
        integration=CAL,
        trigger=Trigger.SCHEDULED,
        now=NOW,
        settings=SETTINGS,
        channel_live=True,
        renew_by=renew_by,
    )
    assert updated.next_sync_at == renew_by
    # a change resets the safety interval; a quiet poll doubles it
    assert updated.current_frequency_seconds == (24 if outcome is Outcome.CHANGED else 48) * HOUR


@pytest.mark.parametrize(
    ("no_changes", "live", "list_refreshed_at", "renew_by", "expected", "counted", "interval"),
    [
        pytest.param(7, False, NOW - 20 * H, None, NOW + 4 * H, 7, 24, id="no-channel-keeps-poll"),
        pytest.param(
            7, False, NOW - 30 * H, None, NOW - 6 * H, 7, 24, id="no-channel-poll-overdue"
        ),
        pytest.param(0, True, NOW - 20 * H, None, NOW + 28 * H, 1, 48, id="live-backs-off"),
        pytest.param(7, True, NOW - 20 * H, None, NOW + 148 * H, 8, 168, id="live-capped"),
        pytest.param(0, True, None, None, NOW + 48 * H, 1, 48, id="never-listed"),
        pytest.param(7, True, NOW - 20 * H, NOW + H, NOW + H, 8, 168, id="renewal-first"),
    ],
)
def test_a_notified_sync_counts_as_a_quiet_safety_poll_without_moving_its_base(
    no_changes, live, list_refreshed_at, renew_by, expected, counted, interval
):
    before = record(no_changes=no_changes, last=NOW - timedelta(hours=1))

    updated = after_notified_sync(
        before,
        NOW,
        SETTINGS,
        list_refreshed_at=list_refreshed_at,
        renew_by=renew_by,
        channel_live=live,
    )

    assert updated.next_sync_at == expected
    assert updated.last_sync_at == NOW
    assert updated.consecutive_no_changes == counted  # push delivers: evidence, not a reset
    assert updated.current_frequency_seconds == interval * HOUR


@pytest.mark.parametrize(
    ("outcome", "trigger", "moved"),
    [
        (Outcome.CHANGED, Trigger.WEBHOOK, True),
        (Outcome.UNCHANGED, Trigger.WEBHOOK, True),
        (Outcome.TRANSIENT_FAILURE, Trigger.WEBHOOK, False),
        (Outcome.CHANGED, Trigger.MANUAL, False),
    ],
)
def test_update_schedule_applies_the_notified_rule_to_notified_successes_only(
    outcome, trigger, moved
):
    before = record(no_changes=3, last=NOW - timedelta(hours=2))
    updated = update_schedule(
        before,
        outcome,
        integration=CAL,
        trigger=trigger,
        now=NOW,
        settings=SETTINGS,
        notified_only=True,
        list_refreshed_at=NOW - timedelta(hours=2),
    )
    if moved:
        assert updated.next_sync_at == NOW + timedelta(hours=22)
        assert updated.consecutive_no_changes == 3
    else:  # the failure's or the manual attempt's own rule applies, not the notified one
        assert updated.next_sync_at != NOW + timedelta(hours=22)
        assert updated.last_sync_at == before.last_sync_at
