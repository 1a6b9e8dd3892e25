"""Error classes of failed Google calls (SPEC 3.3) and `classify`, which assigns them."""

from __future__ import annotations

import email.utils
import http.client
import json
import re
from typing import Any

import httplib2
from google.auth import exceptions as auth_exceptions
from googleapiclient import errors as api_errors

from syncctl import clock
from syncctl.model import ErrorClass

QUOTA_REASONS = frozenset(
    {
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "quotaExceeded",
        "dailyLimitExceeded",
        "RESOURCE_EXHAUSTED",
        "RATE_LIMIT_EXCEEDED",
    }
)
SCOPE_REASONS = frozenset(
    {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficient_scope"}
)
SYNC_TOKEN_REASONS = frozenset({"EXPIRED_SYNC_TOKEN", "INVALID_SYNC_TOKEN", "fullSyncRequired"})
# google-auth retries these token-endpoint answers itself with real sleeps; we retry them instead.
TOKEN_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TOKEN_RETRYABLE_ERRORS = frozenset({"internal_failure", "server_error", "temporarily_unavailable"})
# Token-endpoint errors about the OAuth client (its id or secret), not about the user's grant.
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client", "deleted_client"})

_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(access_token|refresh_token|client_secret|id_token|token)=[^&\s'\"]+"),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(\"(?:access_token|refresh_token|client_secret|id_token)\"\s*:\s*)\"[^\"]*\""),
)
_MAX_MESSAGE = 200


class GoogleError(Exception):
    """A Google call that failed, with the class that decides where the failure is routed."""

    error_class: ErrorClass = ErrorClass.OTHER
    # The API whose request failed ("Google OAuth", "People API", "Calendar API"); set by the
    # session that made the call, None when the failure happened before any request.
    api: str | None = None

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        """The short, secret-free human message."""
        return str(self.args[0]) if self.args else ""


class AuthError(GoogleError):
    """The grant or token is not usable: invalid_grant, an incurable 401, a missing scope."""

    error_class = ErrorClass.AUTH

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        revoked: bool = False,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.revoked = revoked


class ClientError(GoogleError):
    """Google refused the OAuth client (invalid_client, unauthorized_client, deleted_client):
    every user of that client id fails alike, so no user's grant is judged by it."""

    error_class = ErrorClass.CLIENT

    def __init__(self, message: str, *, client_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.client_id = client_id


class QuotaError(GoogleError):
    """Google rate-limited or quota-limited the call (429, 403 rate-limit reasons)."""

    error_class = ErrorClass.QUOTA


class QuotaBudgetSpent(QuotaError):
    """syncctl's own per-minute budget (SPEC 8) is spent: the request was not sent, so the
    pair is deferred by `retry_after` rather than retried now."""


class SyncTokenExpired(GoogleError):
    """The sync token is expired or invalid; the scope needs a full sync."""

    error_class = ErrorClass.SYNC_TOKEN_EXPIRED


class TransientError(GoogleError):
    """A 5xx, a timeout or a connection failure: worth retrying later."""

    error_class = ErrorClass.TRANSIENT


class UnexpectedResponse(GoogleError):
    """Any other 4xx, or a response syncctl cannot understand."""

    error_class = ErrorClass.OTHER


class TokenEndpointUnavailable(httplib2.HttpLib2Error):
    """Raised by syncctl's transport for a retryable token-endpoint answer, so we retry it."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"token endpoint answered {status}")
        self.status = status
        self.retry_after = retry_after


def scrub(text: str) -> str:
    """Remove anything shaped like a credential from text and shorten it to one line."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}=<redacted>", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def parse_retry_after(value: str | None, *, now: clock.Clock = clock.utcnow) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now()).total_seconds())


def classify(exc: BaseException, *, api: str = "Google") -> GoogleError:
    """Turn a client-library, auth or network exception into the GoogleError that routes it."""
    if isinstance(exc, GoogleError):
        return exc
    if isinstance(exc, api_errors.HttpError):
        return _from_http_error(exc, api)
    if isinstance(exc, auth_exceptions.RefreshError):
        return _from_refresh_error(exc)
    if isinstance(exc, auth_exceptions.TransportError):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, TokenEndpointUnavailable):
            return _token_endpoint_error(cause)
        detail = type(cause).__name__ if isinstance(cause, BaseException) else "network error"
        return TransientError(f"could not reach Google's token endpoint ({detail})")
    if isinstance(exc, TokenEndpointUnavailable):
        return _token_endpoint_error(exc)
    if isinstance(exc, TimeoutError):
        return TransientError(f"{api} request timed out")
    if isinstance(exc, ConnectionError | httplib2.HttpLib2Error | http.client.HTTPException):
        return TransientError(f"could not reach {api} ({type(exc).__name__})")
    if isinstance(exc, OSError):
        return TransientError(f"network error talking to {api} ({type(exc).__name__})")
    if isinstance(exc, ValueError):
        return UnexpectedResponse(f"{api} sent a response syncctl cannot read")
    return UnexpectedResponse(f"{api} call failed ({type(exc).__name__})")


def _token_endpoint_error(exc: TokenEndpointUnavailable) -> GoogleError:
    message = f"Google's token endpoint is unavailable (HTTP {exc.status})"
    if exc.status == 429:
        return QuotaError(
            "Google's token endpoint rate-limited the refresh (HTTP 429)",
            status=429,
            retry_after=exc.retry_after,
        )
    return TransientError(message, status=exc.status, retry_after=exc.retry_after)


def _from_refresh_error(exc: auth_exceptions.RefreshError) -> GoogleError:
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    code = str(data.get("error") or "")
    description = str(data.get("error_description") or "")
    if code == "invalid_grant":
        return AuthError(
            "the Google grant has been revoked or has expired (invalid_grant); "
            "the user must reconnect",
            status=400,
            revoked=True,
        )
    if code in CLIENT_ERRORS:
        return ClientError(f"the OAuth client was refused by Google ({code}): check its secret")
    if code in TOKEN_RETRYABLE_ERRORS or getattr(exc, "retryable", False):
        return TransientError(f"Google's token endpoint failed temporarily ({code or 'error'})")
    if code:
        text = f"{code}: {description}" if description else code
        return AuthError(f"token refresh refused: {scrub(text)}")
    text = str(exc.args[0]) if exc.args else ""
    if "No access token" in text:
        return UnexpectedResponse("Google's token endpoint returned no access token")
    return AuthError(f"token refresh failed: {scrub(text) or 'unknown error'}")


def _error_body(content: bytes | str | None) -> dict[str, Any] | str | None:
    if not content:
        return None
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return error  # OAuth style: {"error": "invalid_token", "error_description": ...}
    return None


def _reasons(error: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for key in ("errors", "details"):
        items = error.get(key)
        if isinstance(items, list):
            found.update(str(i["reason"]) for i in items if isinstance(i, dict) and "reason" in i)
    if isinstance(error.get("status"), str):
        found.add(error["status"])
    return found


def _from_http_error(exc: api_errors.HttpError, api: str) -> GoogleError:
    status = int(exc.resp.status)
    headers = {str(k).lower(): str(v) for k, v in dict(exc.resp).items()}
    retry_after = parse_retry_after(headers.get("retry-after"))
    body = _error_body(exc.content)
    reasons: set[str] = set()
    google_message = ""
    if isinstance(body, dict):
        reasons = _reasons(body)
        google_message = str(body.get("message") or "")
    elif isinstance(body, str):
        reasons = {body}
    what = f"{api} HTTP {status}"
    if google_message:
        what = f"{what}: {scrub(google_message).rstrip('.')}"
    elif reasons:
        what = f"{what} ({', '.join(sorted(reasons))})"

    if status == 401:
        return AuthError(f"{what}; the access token was refused even after a refresh", status=401)
    if "invalid_token" in reasons:
        return AuthError(f"{what}; the access token is invalid or expired", status=status)
    if status == 403 and (
        reasons & SCOPE_REASONS
        or "insufficient_scope" in headers.get("www-authenticate", "")
        or "insufficient authentication scopes" in google_message.lower()
    ):
        return AuthError(f"{what}; the grant lacks a required scope", status=status)
    if "invalid_grant" in reasons:
        return AuthError(what, status=status, revoked=True)
    if status == 429 or (status == 403 and reasons & QUOTA_REASONS):
        return QuotaError(what, status=status, retry_after=retry_after)
    if status == 410 or (
        status == 400
        and (reasons & SYNC_TOKEN_REASONS or "sync token is expired" in google_message.lower())
    ):
        return SyncTokenExpired(what, status=status)
    if status == 408 or status >= 500:
        return TransientError(what, status=status, retry_after=retry_after)
    return UnexpectedResponse(what, status=status)
