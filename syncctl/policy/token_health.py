"""Token health (SPEC 3.1): refresh before expiry, turn outcomes into verdicts, gate calls."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from syncctl.config import Settings
from syncctl.model import RECONNECT_NOTICE, Integration, Notice, TokenHealthUpdate, TokenStatus


class TokenCheck(StrEnum):
    """What a refresh, a token-info call, a sync or an auth error revealed about a grant."""

    REFRESHED = "refreshed"  # the token endpoint issued a new access token
    ACCEPTED = "accepted"  # Google accepted the access token (a sync or tokeninfo succeeded)
    ACCESS_TOKEN_EXPIRED = "access_token_expired"  # tokeninfo: access token dead, grant untested
    INVALID_GRANT = "invalid_grant"  # the refresh token is revoked or expired for good
    AUTH_REJECTED = "auth_rejected"  # a 401 a refresh cannot cure, or a 403 for a missing scope
    TRANSIENT = "transient"  # network error, timeout or 5xx: says nothing about the grant


class TokenAction(StrEnum):
    """What the token-health step of the pipeline does before the breaker is consulted."""

    PROCEED = "proceed"  # the stored access token is good for the margin: sync with it
    REFRESH = "refresh"  # refresh first, then sync
    SKIP = "skip"  # revoked: skip with `invalid_token`, no Google call at all


_VERDICTS: dict[TokenCheck, TokenStatus | None] = {
    TokenCheck.REFRESHED: TokenStatus.VALID,
    TokenCheck.ACCEPTED: TokenStatus.VALID,
    TokenCheck.ACCESS_TOKEN_EXPIRED: TokenStatus.EXPIRED,
    TokenCheck.INVALID_GRANT: TokenStatus.REVOKED,
    # Only a reconnect (a new grant with the right scopes) cures these, as with invalid_grant.
    TokenCheck.AUTH_REJECTED: TokenStatus.REVOKED,
    TokenCheck.TRANSIENT: None,
}


def needs_refresh(
    access_token: str | None, token_expiry: datetime | None, now: datetime, settings: Settings
) -> bool:
    """Refresh when the access token is missing, its expiry unknown, or it expires within 5 min."""
    if not access_token or token_expiry is None:
        return True
    return token_expiry - now <= timedelta(seconds=settings.token_refresh_margin_seconds)


def token_verdict(check: TokenCheck) -> TokenStatus | None:
    """The status a check proves, or None when a transient failure proves nothing."""
    return _VERDICTS[check]


def may_call_google(status: TokenStatus) -> bool:
    """A revoked grant gets no Google call at all until the user reconnects; other statuses may."""
    return status is not TokenStatus.REVOKED


def should_notify_reconnect(
    previous_status: TokenStatus, new_status: TokenStatus, *, notice_open: bool = False
) -> bool:
    """Record a reconnect notice only when a grant becomes revoked and none is open for the user."""
    return (
        new_status is TokenStatus.REVOKED
        and previous_status is not TokenStatus.REVOKED
        and not notice_open
    )


def token_action(
    status: TokenStatus,
    access_token: str | None,
    token_expiry: datetime | None,
    now: datetime,
    settings: Settings,
) -> TokenAction:
    """The token step: skip a revoked grant before any call, else refresh when needed, else go."""
    if not may_call_google(status):
        return TokenAction.SKIP
    if needs_refresh(access_token, token_expiry, now, settings):
        return TokenAction.REFRESH
    return TokenAction.PROCEED


def status_after_reconnect() -> TokenStatus:
    """A reconnect (new credentials) resets token health to `unknown` until a check proves it."""
    return TokenStatus.UNKNOWN


def reconnect_notice(user_id: str, message: str) -> Notice:
    """The one notice a revoked grant leaves: what went wrong and the command that cures it."""
    return Notice(
        RECONNECT_NOTICE,
        f"{message}; run `syncctl user add {user_id} --credentials FILE` to reconnect",
    )


def after_check(
    user_id: str,
    integrations: tuple[Integration, ...],
    check: TokenCheck,
    message: str | None,
    previous_status: TokenStatus,
    *,
    notice_open: bool,
) -> tuple[TokenHealthUpdate | None, Notice | None]:
    """The token-health record a check proves for the integrations it covers (None when it
    proves nothing), and the reconnect notice when the grant has just become revoked."""
    status = token_verdict(check)
    if status is None:
        return None, None
    if status is not TokenStatus.REVOKED:
        return TokenHealthUpdate(integrations, status), None
    message = message or "auth error"
    notify = should_notify_reconnect(previous_status, status, notice_open=notice_open)
    notice = reconnect_notice(user_id, message) if notify else None
    return TokenHealthUpdate(integrations, status, message), notice
