"""classify(): each library failure lands in exactly one error class, with a secret-free message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httplib2
import pytest
from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError

from syncctl.google.errors import (
    AuthError,
    ClientError,
    GoogleError,
    QuotaError,
    SyncTokenExpired,
    TokenEndpointUnavailable,
    TransientError,
    UnexpectedResponse,
    classify,
    parse_retry_after,
    scrub,
)
from syncctl.model import ErrorClass


def http_error(status: int, body: Any = None, headers: dict[str, str] | None = None) -> HttpError:
    """A real googleapiclient HttpError as the library builds it from a response."""
    response = httplib2.Response({"status": str(status), **(headers or {})})
    content = json.dumps(body).encode() if body is not None else b""
    return HttpError(response, content, uri="http://127.0.0.1:1/v1/people/me/connections")


def legacy(status: int, reason: str, message: str = "msg") -> dict[str, Any]:
    """A Calendar-style body with errors[]."""
    errors = [{"domain": "usageLimits", "reason": reason, "message": message}]
    return {"error": {"errors": errors, "code": status, "message": message}}


def rpc(status: int, api_status: str, *, reason: str | None = None, message: str = "m") -> dict:
    """A People-style google.rpc.Status body, optionally with an ErrorInfo reason."""
    error: dict[str, Any] = {"code": status, "message": message, "status": api_status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    return {"error": error}


@pytest.mark.parametrize(
    ("exc", "expected", "status"),
    [
        (http_error(401, rpc(401, "UNAUTHENTICATED")), AuthError, 401),
        (
            http_error(
                403, rpc(403, "PERMISSION_DENIED", reason="ACCESS_TOKEN_SCOPE_INSUFFICIENT")
            ),
            AuthError,
            403,
        ),
        (http_error(403, legacy(403, "insufficientPermissions")), AuthError, 403),
        (http_error(429, legacy(429, "rateLimitExceeded")), QuotaError, 429),
        (http_error(429, rpc(429, "RESOURCE_EXHAUSTED")), QuotaError, 429),
        (http_error(403, legacy(403, "rateLimitExceeded")), QuotaError, 403),
        (http_error(403, legacy(403, "userRateLimitExceeded")), QuotaError, 403),
        (http_error(403, rpc(403, "RESOURCE_EXHAUSTED")), QuotaError, 403),
        (
            http_error(400, rpc(400, "FAILED_PRECONDITION", reason="EXPIRED_SYNC_TOKEN")),
            SyncTokenExpired,
            400,
        ),
        (http_error(410, legacy(410, "fullSyncRequired")), SyncTokenExpired, 410),
        (http_error(500, legacy(500, "backendError")), TransientError, 500),
        (http_error(503, None), TransientError, 503),
        (http_error(408, None), TransientError, 408),
        (http_error(400, rpc(400, "INVALID_ARGUMENT")), UnexpectedResponse, 400),
        (http_error(403, rpc(403, "PERMISSION_DENIED")), UnexpectedResponse, 403),
        (http_error(404, None), UnexpectedResponse, 404),
        (
            http_error(400, {"error": "invalid_token", "error_description": "Invalid Value"}),
            AuthError,
            400,
        ),
    ],
)
def test_http_errors_are_classified_by_status_and_reason(
    exc: HttpError, expected: type[GoogleError], status: int
) -> None:
    classified = classify(exc)
    assert type(classified) is expected
    assert classified.status == status
    assert classified.error_class == expected.error_class


def test_quota_error_carries_retry_after_from_the_header() -> None:
    exc = http_error(429, legacy(429, "rateLimitExceeded"), {"retry-after": "7"})
    classified = classify(exc)
    assert isinstance(classified, QuotaError)
    assert classified.retry_after == 7.0


def test_retry_after_accepts_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=lambda: now) == 30.0
    assert parse_retry_after("soon", now=lambda: now) is None
    assert parse_retry_after(None) is None


def test_invalid_grant_is_a_revoked_auth_error() -> None:
    exc = auth_exceptions.RefreshError(
        "invalid_grant: Token has been expired or revoked.",
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
        retryable=False,
    )
    classified = classify(exc)
    assert isinstance(classified, AuthError)
    assert classified.revoked is True
    assert classified.error_class is ErrorClass.AUTH


def test_other_refresh_refusals_are_auth_errors_that_are_not_revocations() -> None:
    exc = auth_exceptions.RefreshError(
        "invalid_scope: Bad Request", {"error": "invalid_scope", "error_description": "x"}
    )
    classified = classify(exc)
    assert isinstance(classified, AuthError)
    assert classified.revoked is False


@pytest.mark.parametrize("code", ["invalid_client", "unauthorized_client", "deleted_client"])
def test_a_refused_oauth_client_is_a_client_error_not_a_user_verdict(code: str) -> None:
    exc = auth_exceptions.RefreshError(
        f"{code}: Unauthorized", {"error": code, "error_description": "The OAuth client ..."}
    )
    classified = classify(exc)
    assert isinstance(classified, ClientError)
    assert classified.error_class is ErrorClass.CLIENT
    assert code in classified.message and "check its secret" in classified.message


def test_an_incurable_401_is_an_auth_error_that_is_not_a_revocation() -> None:
    classified = classify(http_error(401, rpc(401, "UNAUTHENTICATED")))
    assert isinstance(classified, AuthError)
    assert classified.revoked is False


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        httplib2.ServerNotFoundError("Unable to find the server at example.invalid"),
        auth_exceptions.TransportError(ConnectionResetError(104, "reset")),
    ],
)
def test_network_failures_are_transient(exc: Exception) -> None:
    assert isinstance(classify(exc), TransientError)


def test_a_token_endpoint_outage_keeps_its_status_and_rate_limits_are_quota() -> None:
    outage = classify(auth_exceptions.TransportError(TokenEndpointUnavailable(503)))
    limited = classify(auth_exceptions.TransportError(TokenEndpointUnavailable(429, 3.0)))
    assert isinstance(outage, TransientError) and outage.status == 503
    assert isinstance(limited, QuotaError) and limited.retry_after == 3.0


def test_messages_never_show_credentials() -> None:
    exc = http_error(500, {"error": {"code": 500, "message": "bad access_token=abc123secret"}})
    exc.uri = "http://127.0.0.1:1/tokeninfo?access_token=abc123secret"
    refresh = auth_exceptions.RefreshError("boom refresh_token=rt-secret&client_secret=cs-secret")
    for failure in (exc, refresh):
        text = str(classify(failure))
        assert "secret" not in text.replace("client_secret=<redacted>", "")
        assert "abc123" not in text and "rt-secret" not in text


def test_scrub_removes_bearer_tokens_and_shortens() -> None:
    assert scrub("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer=<redacted>"
    assert len(scrub("x" * 1000)) == 200
