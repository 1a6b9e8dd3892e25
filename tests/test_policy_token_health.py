"""Token health policy (SPEC 3.1): refresh margin, verdicts, the Google-call gate, one notice."""

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from syncctl.config import Settings
from syncctl.model import TokenStatus
from syncctl.policy.token_health import (
    TokenAction,
    TokenCheck,
    may_call_google,
    needs_refresh,
    should_notify_reconnect,
    status_after_reconnect,
    token_action,
    token_verdict,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SETTINGS = Settings()


@pytest.mark.parametrize(
    ("access_token", "expires_in", "expected"),
    [
        pytest.param(None, timedelta(hours=1), True, id="no-access-token"),
        pytest.param("", timedelta(hours=1), True, id="empty-access-token"),
        pytest.param("tok", None, True, id="unknown-expiry"),
        pytest.param("tok", -timedelta(minutes=1), True, id="already-expired"),
        pytest.param("tok", timedelta(minutes=4, seconds=59), True, id="expires-in-4m59s"),
        pytest.param("tok", timedelta(minutes=5), True, id="expires-in-exactly-5m"),
        pytest.param("tok", timedelta(minutes=5, seconds=1), False, id="expires-in-5m01s"),
        pytest.param("tok", timedelta(hours=1), False, id="expires-in-1h"),
    ],
)
def test_refresh_is_needed_when_token_missing_or_expiring_within_five_minutes(
    access_token: str | None, expires_in: timedelta | None, expected: bool
) -> None:
    expiry = None if expires_in is None else NOW + expires_in
    assert needs_refresh(access_token, expiry, NOW, SETTINGS) is expected


def test_refresh_margin_comes_from_settings() -> None:
    settings = Settings(token_refresh_margin_seconds=60)
    assert needs_refresh("tok", NOW + timedelta(seconds=60), NOW, settings) is True
    assert needs_refresh("tok", NOW + timedelta(seconds=61), NOW, settings) is False


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        pytest.param(TokenCheck.REFRESHED, TokenStatus.VALID, id="refresh-success-is-valid"),
        pytest.param(TokenCheck.ACCEPTED, TokenStatus.VALID, id="accepted-token-is-valid"),
        pytest.param(
            TokenCheck.ACCESS_TOKEN_EXPIRED, TokenStatus.EXPIRED, id="dead-access-token-expired"
        ),
        pytest.param(TokenCheck.INVALID_GRANT, TokenStatus.REVOKED, id="invalid-grant-revoked"),
        pytest.param(TokenCheck.AUTH_REJECTED, TokenStatus.REVOKED, id="uncurable-auth-revoked"),
        pytest.param(TokenCheck.TRANSIENT, None, id="transient-failure-no-verdict"),
    ],
)
def test_verdict_of_each_token_check(check: TokenCheck, expected: TokenStatus | None) -> None:
    assert token_verdict(check) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (TokenStatus.VALID, True),
        (TokenStatus.EXPIRED, True),
        (TokenStatus.UNKNOWN, True),
        (TokenStatus.REVOKED, False),
    ],
)
def test_only_a_revoked_grant_blocks_google_calls(status: TokenStatus, expected: bool) -> None:
    assert may_call_google(status) is expected


@pytest.mark.parametrize(
    ("previous", "new", "notice_open", "expected"),
    [
        pytest.param(
            TokenStatus.UNKNOWN, TokenStatus.REVOKED, False, True, id="unknown-to-revoked"
        ),
        pytest.param(TokenStatus.VALID, TokenStatus.REVOKED, False, True, id="valid-to-revoked"),
        pytest.param(
            TokenStatus.EXPIRED, TokenStatus.REVOKED, False, True, id="expired-to-revoked"
        ),
        pytest.param(TokenStatus.REVOKED, TokenStatus.REVOKED, False, False, id="still-revoked"),
        pytest.param(
            TokenStatus.VALID, TokenStatus.REVOKED, True, False, id="notice-already-open-for-user"
        ),
        pytest.param(TokenStatus.REVOKED, TokenStatus.UNKNOWN, False, False, id="reconnected"),
        pytest.param(TokenStatus.UNKNOWN, TokenStatus.VALID, False, False, id="became-valid"),
        pytest.param(TokenStatus.VALID, TokenStatus.EXPIRED, False, False, id="became-expired"),
    ],
)
def test_one_reconnect_notice_when_grant_becomes_revoked(
    previous: TokenStatus, new: TokenStatus, notice_open: bool, expected: bool
) -> None:
    assert should_notify_reconnect(previous, new, notice_open=notice_open) is expected


@pytest.mark.parametrize(
    ("status", "access_token", "expires_in", "expected"),
    [
        pytest.param(
            TokenStatus.REVOKED, "tok", timedelta(hours=1), TokenAction.SKIP, id="revoked-fresh"
        ),
        pytest.param(TokenStatus.REVOKED, None, None, TokenAction.SKIP, id="revoked-no-refresh"),
        pytest.param(
            TokenStatus.VALID, "tok", timedelta(hours=1), TokenAction.PROCEED, id="valid-fresh"
        ),
        pytest.param(
            TokenStatus.VALID, "tok", timedelta(minutes=5), TokenAction.REFRESH, id="valid-expiring"
        ),
        pytest.param(TokenStatus.UNKNOWN, None, None, TokenAction.REFRESH, id="unknown-no-token"),
        pytest.param(
            TokenStatus.EXPIRED, "tok", -timedelta(hours=1), TokenAction.REFRESH, id="expired"
        ),
    ],
)
def test_token_step_skips_revoked_before_any_refresh(
    status: TokenStatus,
    access_token: str | None,
    expires_in: timedelta | None,
    expected: TokenAction,
) -> None:
    expiry = None if expires_in is None else NOW + expires_in
    assert token_action(status, access_token, expiry, NOW, SETTINGS) is expected


def test_reconnect_resets_status_to_unknown() -> None:
    assert status_after_reconnect() is TokenStatus.UNKNOWN


@freeze_time("2031-01-01 00:00:00")
def test_decisions_follow_the_given_now_not_the_wall_clock() -> None:
    # GIVEN a wall clock years after NOW, WHEN deciding for NOW, THEN only NOW counts.
    assert needs_refresh("tok", NOW + timedelta(hours=1), NOW, SETTINGS) is False
