"""Names shared by every layer: integrations and the public value spellings of SPEC section 7."""

from enum import StrEnum


class Integration(StrEnum):
    """A stored `integration_type`; `cli_name` is how the command line spells it."""

    CONTACTS = "google_contacts"
    CALENDAR = "google_calendar"

    @property
    def cli_name(self) -> str:
        return CLI_NAMES[self]


CLI_NAMES = {Integration.CONTACTS: "contacts", Integration.CALENDAR: "calendar"}
ALL_INTEGRATIONS = (Integration.CONTACTS, Integration.CALENDAR)


def parse_integrations(text: str, *, allow_all: bool = True) -> tuple[Integration, ...]:
    """Parse `contacts`, `calendar`, `all` or a comma list; ValueError if unknown."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("no integration given (use contacts, calendar or all)")
    chosen: list[Integration] = []
    for name in names:
        if name == "all" and allow_all:
            return ALL_INTEGRATIONS
        matches = [i for i in ALL_INTEGRATIONS if name in (i.cli_name, i.value)]
        if not matches:
            allowed = "contacts, calendar" + (" or all" if allow_all else "")
            raise ValueError(f"unknown integration {name!r} (use {allowed})")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return tuple(chosen)


# The `notifications.kind` of the notice that a user must reconnect (grant revoked).
RECONNECT_NOTICE = "reconnect_required"


class SyncType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


class Trigger(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    WEBHOOK = "webhook"


class Result(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"


class SkipReason(StrEnum):
    INVALID_TOKEN = "invalid_token"
    CIRCUIT_OPEN = "circuit_open"


class SavedBy(StrEnum):
    TOKEN_HEALTH = "token_health"
    CIRCUIT_BREAKER = "circuit_breaker"
    ADAPTIVE_SCHEDULE = "adaptive_schedule"
    WEBHOOK = "webhook"


class TokenStatus(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ErrorClass(StrEnum):
    """How a failed Google call is routed (SPEC 3.3): each class has one destination."""

    AUTH = "auth"
    QUOTA = "quota"
    SYNC_TOKEN_EXPIRED = "sync_token_expired"
    TRANSIENT = "transient"
    OTHER = "other"


class UserCredentials:
    """A user's Google authorized-user grant as stored; `repr` never shows a secret."""

    __slots__ = (
        "client_id",
        "client_secret",
        "refresh_token",
        "access_token",
        "token_expiry",
        "scopes",
    )

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        access_token: str | None = None,
        token_expiry: str | None = None,
        scopes: tuple[str, ...] = (),
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.access_token = access_token
        self.token_expiry = token_expiry  # UTC ISO-8601 in the injected clock's frame
        self.scopes = scopes

    def __repr__(self) -> str:
        return f"UserCredentials(client_id={self.client_id!r}, secrets=<hidden>)"
