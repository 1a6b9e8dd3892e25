"""Names shared by every layer: integrations, the public value spellings of SPEC section 7, and
the records that policy/ decides and store/ persists (so store/ never imports policy/)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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


def shown_integration(stored: str) -> str:
    """How output spells a stored `integration_type`: its command-line name (SPEC 1)."""
    return {i.value: i.cli_name for i in ALL_INTEGRATIONS}.get(str(stored), str(stored))


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
# The `notifications.kind` of the notice that a sync was held (one open notice a user).
MASS_DELETE_NOTICE = "mass_delete_held"


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
    MASS_DELETE_HELD = "mass_delete_held"


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
    CLIENT = "client"  # Google refused the OAuth client (its id or secret), not a user's grant
    OTHER = "other"


class UserCredentials:
    """A user's Google authorized-user grant as stored; `repr` never shows a secret.

    Given an `opener`, `client_secret` and `refresh_token` arrive sealed (as stored) and are
    opened with it when either is first read: only a token refresh needs them, so most
    attempts never decrypt them.
    """

    __slots__ = (
        "client_id",
        "_client_secret",
        "_refresh_token",
        "_opener",
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
        opener: Callable[[str], str] | None = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._opener = opener
        self.access_token = access_token
        self.token_expiry = token_expiry  # UTC ISO-8601 in the injected clock's frame
        self.scopes = scopes

    @property
    def client_secret(self) -> str:
        self.open()
        return self._client_secret

    @property
    def refresh_token(self) -> str:
        self.open()
        return self._refresh_token

    @property
    def opened(self) -> bool:
        """Whether the client secret and refresh token are in memory in the clear."""
        return self._opener is None

    def open(self) -> None:
        """Open the sealed secrets now (SecretsError from the opener if it cannot)."""
        opener, self._opener = self._opener, None
        if opener is not None:
            self._client_secret = opener(self._client_secret)
            self._refresh_token = opener(self._refresh_token)

    def __repr__(self) -> str:
        return f"UserCredentials(client_id={self.client_id!r}, secrets=<hidden>)"


# -- records: decided by policy/, persisted by store/ ----------------------------------------------


@dataclass(frozen=True)
class BreakerRecord:
    """One `circuit_breaker_state` row; the default is a fresh, closed breaker."""

    state: BreakerState = BreakerState.CLOSED
    failure_count: int = 0
    last_failure_at: datetime | None = None
    last_failure_reason: str | None = None
    opened_at: datetime | None = None
    next_retry_at: datetime | None = None


@dataclass(frozen=True)
class ScheduleRecord:
    """One `sync_schedule` row's timing; the user, integration and pending trigger sit beside it."""

    default_frequency_seconds: int
    current_frequency_seconds: int
    consecutive_no_changes: int
    last_sync_at: datetime | None
    next_sync_at: datetime


@dataclass(frozen=True)
class ScheduleMark:
    """A pair's `next_sync_at` and pending trigger at one moment; a change means a notification."""

    due: datetime
    pending_trigger: Trigger | None


@dataclass(frozen=True)
class DuePair:
    """A (user, integration) whose next_sync_at has come: what made it due and what gates it."""

    user_id: str
    integration: Integration
    next_sync_at: str
    trigger: Trigger
    token_status: TokenStatus = TokenStatus.UNKNOWN
    breaker: BreakerRecord = BreakerRecord()
    recent_calls_per_sync: float | None = None  # filled only when asked for (the report)
    mass_delete_held: bool = False  # the mass-delete guard holds the pair for an operator
    client_id: str | None = None  # the OAuth client of the user's grant, as listed


@dataclass(frozen=True)
class AttemptRecord:
    """Everything one attempt writes to `sync_metrics`."""

    user_id: str
    integration_type: Integration
    trigger: Trigger
    result: Result
    created_at: str
    sync_type: SyncType | None = None
    skip_reason: SkipReason | None = None
    duration_ms: int = 0
    items_processed: int = 0
    items_added: int = 0
    items_updated: int = 0
    items_deleted: int = 0
    full_resync: bool = False
    breaker_trial: bool = False  # the half-open trial of an open breaker (one probe, no retries)
    api_calls_made: int = 0
    api_calls_saved: int = 0
    saved_by: SavedBy | None = None
    error_class: ErrorClass | None = None
    error_message: str | None = None
    calendar_list_skipped: bool = False  # a calendar sync that did not request the list
    # of api_calls_made, the watch-channel upkeep's and the token refreshes (savings.py prices a
    # naive poll as the sync's other requests plus the naive poller's own refresh)
    overhead_calls: int = 0


@dataclass(frozen=True)
class SyncOutcome:
    """What one engine run did, as the orchestrator records it.

    `sync_type` is `full` when any scope of the run was listed without a sync token (first
    sync, `--full`, a calendar seen for the first time, or an expired token); `full_resync`
    is True when an expired sync token forced that. Counts are rows of the mirror tables
    (contacts and groups; calendars and events) that were added, changed or deleted, so a
    run that found nothing new has all three at zero. `api_calls_made` counts the HTTP
    requests the run sent (GoogleSession.calls_made during the run).
    """

    sync_type: SyncType
    items_processed: int
    added: int
    updated: int
    deleted: int
    full_resync: bool = False
    api_calls_made: int = 0

    @property
    def changed(self) -> bool:
        """Whether the run changed any stored row."""
        return bool(self.added or self.updated or self.deleted)


@dataclass(frozen=True)
class PairState:
    """Everything one attempt reads about its (user, integration), loaded once before it starts."""

    user_id: str
    integration: Integration
    token_status: TokenStatus
    breaker: BreakerRecord
    schedule: ScheduleRecord | None
    mark: ScheduleMark | None
    user_integrations: tuple[Integration, ...]
    reconnect_notice_open: bool
    # Mean calls of recent failed attempts; read only while the breaker is not closed (only a
    # circuit_open skip is priced with it).
    recent_calls_per_failure: float | None
    # Calls of the pair's recent scheduled incremental successes and whether each skipped the
    # calendar list (what one naive poll sends: policy.savings.poll_equivalent).
    recent_poll_calls: tuple[tuple[int, bool], ...] = ()
    # The pair's first attempt and its latest scheduled or webhook-triggered one: where the
    # stretch of the timeline the next attempt accounts for begins (policy.savings).
    first_attempt_at: datetime | None = None
    previous_attempt_at: datetime | None = None
    mass_delete_held: bool = False  # the guard held the pair's last sync; not yet acted on
    mass_delete_notice_open: bool = False  # the user has an unresolved mass-delete notice
    mirrored_calendars: int | None = None  # a calendar pair's mirrored calendars (else None)
    # When a calendar pair's calendar list was last listed (its sync token stored), else None.
    calendar_list_listed_at: datetime | None = None
    open_channels: bool = False  # a calendar pair's user has a watch channel not yet stopped


@dataclass(frozen=True)
class TokenHealthUpdate:
    """A token-health verdict to store for some of a user's integrations."""

    integrations: tuple[Integration, ...]
    status: TokenStatus
    error_message: str | None = None


@dataclass(frozen=True)
class Notice:
    """An operator notice to record for a user (e.g. that the user must reconnect)."""

    kind: str
    message: str


@dataclass(frozen=True)
class MassDeleteHold:
    """What the mass-delete guard held: the mirror, the rows it held and those the sync would
    have deleted (a `mass_delete_holds` row)."""

    mirror: str
    mirrored: int
    deleting: int


@dataclass(frozen=True)
class PairUpdate:
    """Everything one attempt writes, in one transaction; None fields are left as they are."""

    attempt: AttemptRecord
    breaker: BreakerRecord | None = None
    schedule: ScheduleRecord | None = None
    keep_pending: bool = True  # False: the attempt consumed the trigger a webhook left pending
    token_health: TokenHealthUpdate | None = None
    notice: Notice | None = None
    refreshed: RefreshedToken | None = None
    hold: MassDeleteHold | None = None  # the guard held this attempt: record the hold
    hold_cleared: bool = False  # the pair synced without being held: forget its hold


@dataclass(frozen=True)
class RefreshedToken:
    """An access token a refresh obtained during the attempt, and a rotated refresh token."""

    access_token: str | None
    token_expiry: str | None
    rotated_refresh_token: str | None = None


@dataclass(frozen=True)
class Lease:
    """One `sync_leases` row: `holder` syncs the pair until `expires_at` (SPEC 5, 7)."""

    user_id: str
    integration_type: str
    holder: str
    expires_at: datetime
