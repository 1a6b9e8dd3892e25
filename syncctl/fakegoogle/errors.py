"""Error replies shaped like Google's: People (google.rpc), Calendar (legacy errors[]), OAuth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    410: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
RPC_MESSAGE = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    409: "The operation was aborted.",
    500: "Internal error encountered.",
    502: "The service is currently unavailable.",
    503: "The service is currently unavailable.",
    504: "The request timed out.",
}
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
SCOPE_MESSAGE = "Request had insufficient authentication scopes."
EXPIRED_PEOPLE_TOKEN_MESSAGE = (
    "Sync token is expired. Clear local cache and retry call without the sync token."
)
FULL_SYNC_MESSAGE = "Sync token is no longer valid, a full sync is required."
RATE_LIMIT_REASONS = ("rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded")
RATE_LIMIT_MESSAGES = {
    "rateLimitExceeded": "Rate Limit Exceeded",
    "userRateLimitExceeded": "User Rate Limit Exceeded",
    "quotaExceeded": "Calendar usage limits exceeded.",
}


@dataclass
class Reply:
    """An HTTP answer: status, JSON body (None for no body) and extra headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised by endpoint code to answer with a Google-shaped error."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.reply = Reply(status, body, dict(headers or {}))


def _error_info(reason: str, service: str, **metadata: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": service, **metadata},
    }


def rpc_error(
    status: int,
    message: str | None = None,
    *,
    details: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    api_status: str | None = None,
) -> ApiError:
    """A v1 (google.rpc.Status) error as the People API sends it."""
    error: dict[str, Any] = {
        "code": status,
        "message": message or RPC_MESSAGE.get(status, "Error"),
    }
    if errors:
        error["errors"] = errors
    error["status"] = api_status or RPC_STATUS.get(status, "UNKNOWN")
    if details:
        error["details"] = details
    return ApiError(status, {"error": error}, headers)


def calendar_error(
    status: int,
    message: str,
    reason: str,
    *,
    domain: str = "global",
    location: str | None = None,
    location_type: str = "parameter",
    headers: dict[str, str] | None = None,
) -> ApiError:
    """A Calendar v3 error in the legacy `errors[]` shape of the Calendar errors guide."""
    item: dict[str, Any] = {"domain": domain, "reason": reason, "message": message}
    if location:
        item["locationType"] = location_type
        item["location"] = location
    return ApiError(
        status, {"error": {"errors": [item], "code": status, "message": message}}, headers
    )


def oauth_error(status: int, error: str, description: str) -> ApiError:
    """An OAuth token-endpoint error (`{"error", "error_description"}`)."""
    return ApiError(status, {"error": error, "error_description": description})


def people_bad_request(message: str) -> ApiError:
    """400 INVALID_ARGUMENT with Google's BadRequest shape."""
    return rpc_error(400, message)


def calendar_bad_request(
    message: str, *, reason: str = "invalid", location: str | None = None
) -> ApiError:
    """400 from the Calendar API."""
    return calendar_error(400, message, reason, location=location)


def expired_people_sync_token() -> ApiError:
    """400 with ErrorInfo EXPIRED_SYNC_TOKEN, the People API's answer to an old sync token."""
    # Body as suggested in GOOGLE_API_NOTES section 1; the real `status` is unconfirmed.
    return rpc_error(
        400,
        EXPIRED_PEOPLE_TOKEN_MESSAGE,
        api_status="FAILED_PRECONDITION",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "EXPIRED_SYNC_TOKEN",
                "domain": "people.googleapis.com",
            }
        ],
    )


def full_sync_required() -> ApiError:
    """410 fullSyncRequired, the Calendar API's answer to an expired or unknown sync token."""
    return calendar_error(410, FULL_SYNC_MESSAGE, "fullSyncRequired", location="syncToken")


def unauthenticated(family: str, *, missing: bool, expired: bool = False) -> ApiError:
    """401 for a missing, unknown, expired or revoked access token, with WWW-Authenticate."""
    realm = 'Bearer realm="https://accounts.google.com/"'
    headers = {"WWW-Authenticate": realm if missing else realm + ', error="invalid_token"'}
    if family == "people":
        reason = "CREDENTIALS_MISSING" if missing else "ACCESS_TOKEN_EXPIRED" if expired else None
        details = [_error_info(reason, "people.googleapis.com")] if reason else None
        return rpc_error(401, UNAUTHENTICATED_MESSAGE, details=details, headers=headers)
    errors = [
        {
            "message": "Invalid Credentials",
            "domain": "global",
            "reason": "authError",
            "location": "Authorization",
            "locationType": "header",
        }
    ]
    return rpc_error(401, UNAUTHENTICATED_MESSAGE, errors=errors, headers=headers)


def insufficient_scope(family: str, method: str) -> ApiError:
    """403 for an access token that lacks the API's scope."""
    service = "people.googleapis.com" if family == "people" else "calendar-json.googleapis.com"
    details = [_error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", service, method=method)]
    if family == "people":
        return rpc_error(403, SCOPE_MESSAGE, details=details)
    errors = [
        {
            "message": "Insufficient Permission",
            "domain": "global",
            "reason": "insufficientPermissions",
        }
    ]
    return rpc_error(403, SCOPE_MESSAGE, errors=errors, details=details)


def not_found(family: str, message: str = "Not Found") -> ApiError:
    """404 in the family's shape."""
    if family == "people":
        return rpc_error(404)
    return calendar_error(404, message, "notFound")


def injected(
    family: str, status: int, *, reason: str | None, retry_after: float | None
) -> ApiError:
    """The error body for a fault injected by `fail_next` / `set_always_fail`."""
    headers = {"Retry-After": _seconds(retry_after)} if retry_after is not None else {}
    if family == "oauth":
        error = _oauth_fault(status, reason)
        error.reply.headers.update(headers)
        return error
    if status == 401:
        error = unauthenticated(family, missing=False)
    elif status == 403 and reason in ("insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"):
        error = insufficient_scope(family, "injected")
    elif family == "people":
        error = _people_fault(status, reason)
    else:
        error = _calendar_fault(status, reason)
    error.reply.headers.update(headers)
    return error


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _people_fault(status: int, reason: str | None) -> ApiError:
    if status == 429:
        message = (
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute "
            "per user' of service 'people.googleapis.com' for consumer 'project_number:0'."
        )
        info = _error_info(
            reason or "RATE_LIMIT_EXCEEDED",
            "people.googleapis.com",
            quota_metric="people.googleapis.com/read_requests",
        )
        return rpc_error(429, message, details=[info])
    if status == 403 and (reason is None or reason in RATE_LIMIT_REASONS):
        chosen = reason or "rateLimitExceeded"
        errors = [
            {"message": RATE_LIMIT_MESSAGES[chosen], "domain": "usageLimits", "reason": chosen}
        ]
        info = _error_info("RATE_LIMIT_EXCEEDED", "people.googleapis.com")
        return rpc_error(403, RATE_LIMIT_MESSAGES[chosen], errors=errors, details=[info])
    if status == 400 and reason == "EXPIRED_SYNC_TOKEN":
        return expired_people_sync_token()
    details = [_error_info(reason, "people.googleapis.com")] if reason else None
    return rpc_error(status, details=details)


def _calendar_fault(status: int, reason: str | None) -> ApiError:
    if status in (403, 429):
        chosen = reason or "rateLimitExceeded"
        message = RATE_LIMIT_MESSAGES.get(chosen, "Forbidden")
        domain = "usageLimits" if chosen in RATE_LIMIT_REASONS else "global"
        return calendar_error(status, message, chosen, domain=domain)
    if status == 410:
        return (
            full_sync_required()
            if reason in (None, "fullSyncRequired")
            else calendar_error(410, "Resource has been deleted", reason)
        )
    if status >= 500:
        message = "Backend Error" if status == 500 else "The service is currently unavailable."
        return calendar_error(status, message, reason or "backendError")
    if status == 404:
        return calendar_error(404, "Not Found", reason or "notFound")
    return calendar_error(status, RPC_MESSAGE.get(status, "Bad Request"), reason or "badRequest")


def _oauth_fault(status: int, reason: str | None) -> ApiError:
    if reason:
        return oauth_error(status, reason, "Injected failure.")
    if status == 400:
        return oauth_error(400, "invalid_grant", "Bad Request")
    if status == 401:
        return oauth_error(401, "invalid_client", "Unauthorized")
    if status == 429:
        return oauth_error(429, "rate_limit_exceeded", "Rate Limit Exceeded")
    if status == 503:
        return oauth_error(503, "temporarily_unavailable", "The service is currently unavailable.")
    if status >= 500:
        return oauth_error(status, "internal_failure", "Backend Error")
    return oauth_error(status, "invalid_request", "Bad Request")
