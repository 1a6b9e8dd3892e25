"""policy/fresh_token.py: a pair due soon rides on a token another sync just made fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import Settings
from syncctl.policy.fresh_token import due_on_fresh_token

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
DAY = 86400
SETTINGS = Settings()


@pytest.mark.parametrize(
    ("next_sync_at", "interval", "valid_until", "settings", "expected"),
    [
        pytest.param(NOW + 17 * H, 3 * DAY, NOW + H, SETTINGS, True, id="within-a-quarter"),
        pytest.param(NOW + 18 * H, 3 * DAY, NOW + H, SETTINGS, True, id="at-the-quarter"),
        pytest.param(NOW + 19 * H, 3 * DAY, NOW + H, SETTINGS, False, id="beyond-the-quarter"),
        pytest.param(NOW - H, 3 * DAY, NOW + H, SETTINGS, True, id="already-due"),
        pytest.param(NOW + 17 * H, 3 * DAY, None, SETTINGS, False, id="no-token"),
        pytest.param(
            NOW + 17 * H, 3 * DAY, NOW + timedelta(minutes=5), SETTINGS, False, id="token-stale"
        ),
        pytest.param(
            NOW + 17 * H,
            3 * DAY,
            NOW + timedelta(minutes=6),
            SETTINGS,
            True,
            id="token-just-past-the-margin",
        ),
        pytest.param(
            NOW + 17 * H,
            3 * DAY,
            NOW + H,
            Settings(fresh_token_early_fraction=0.1),
            False,
            id="setting",
        ),
    ],
)
def test_a_pair_runs_early_only_within_its_window_on_a_fresh_token(
    next_sync_at, interval, valid_until, settings, expected
):
    assert (
        due_on_fresh_token(next_sync_at, interval, NOW, settings, token_valid_until=valid_until)
        is expected
    )
