"""When a calendar sync lists the calendar list (policy.calendar_list): on its own cadence."""

from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import HOUR, Settings
from syncctl.model import Trigger
from syncctl.policy.calendar_list import lists_calendar_list

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DEFAULT = Settings()  # calendar_list_refresh_seconds = 24 h
EVERY_SYNC = Settings(calendar_list_refresh_seconds=0)


@pytest.mark.parametrize(
    ("listed_hours_ago", "trigger", "full", "settings", "expected"),
    [
        pytest.param(None, Trigger.SCHEDULED, False, DEFAULT, True, id="never-listed"),
        pytest.param(4, Trigger.SCHEDULED, False, DEFAULT, False, id="listed-4h-ago"),
        pytest.param(23.99, Trigger.SCHEDULED, False, DEFAULT, False, id="just-inside-cadence"),
        pytest.param(24, Trigger.SCHEDULED, False, DEFAULT, True, id="cadence-elapsed"),
        pytest.param(30, Trigger.SCHEDULED, False, DEFAULT, True, id="overdue"),
        pytest.param(4, Trigger.WEBHOOK, False, DEFAULT, False, id="webhook-within-cadence"),
        pytest.param(4, Trigger.MANUAL, False, DEFAULT, True, id="manual-always-lists"),
        pytest.param(4, Trigger.SCHEDULED, True, DEFAULT, True, id="full-always-lists"),
        pytest.param(0, Trigger.SCHEDULED, False, EVERY_SYNC, True, id="zero-lists-every-sync"),
    ],
)
def test_the_calendar_list_is_listed_on_its_own_cadence(
    listed_hours_ago: float | None,
    trigger: Trigger,
    full: bool,
    settings: Settings,
    expected: bool,
) -> None:
    listed = None if listed_hours_ago is None else NOW - timedelta(hours=listed_hours_ago)
    assert lists_calendar_list(listed, NOW, settings, trigger=trigger, full=full) is expected


def test_the_default_cadence_is_a_day() -> None:
    assert DEFAULT.calendar_list_refresh_seconds == 24 * HOUR
