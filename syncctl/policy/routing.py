"""Where a classified Google error goes (SPEC 3.3), decided once before the breaker sees it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from syncctl.model import ErrorClass, Result, SkipReason
from syncctl.policy.schedule import Outcome


class Destination(StrEnum):
    """The one policy that handles an error class."""

    TOKEN_HEALTH = "token_health"  # a token verdict; the grant needs a reconnect
    QUOTA_DEFER = "quota_defer"  # defer the pair, honouring Retry-After
    BREAKER = "breaker"  # a breaker failure; the pair stays due
    FULL_SYNC_FALLBACK = "full_sync_fallback"  # the engine redoes that scope as a full sync
    CLIENT_GATE = "client_gate"  # the OAuth client was refused: no user verdict, no breaker


@dataclass(frozen=True)
class Route:
    """How the orchestrator treats an error: the attempt's result, the breaker, the schedule."""

    destination: Destination
    is_failure: bool  # the attempt is recorded with result `failure`
    counts_for_breaker: bool  # call breaker.on_failure (never for auth or quota)
    outcome: Outcome | None  # for schedule.update_schedule and savings; None: not an ending
    reason: str | None  # the failure reason for the metrics row and the breaker


_ROUTES: dict[ErrorClass, Route] = {
    ErrorClass.AUTH: Route(Destination.TOKEN_HEALTH, True, False, Outcome.AUTH_FAILURE, "auth"),
    ErrorClass.QUOTA: Route(Destination.QUOTA_DEFER, True, False, Outcome.QUOTA_FAILURE, "quota"),
    ErrorClass.TRANSIENT: Route(
        Destination.BREAKER, True, True, Outcome.TRANSIENT_FAILURE, "transient"
    ),
    ErrorClass.OTHER: Route(
        Destination.BREAKER, True, True, Outcome.TRANSIENT_FAILURE, "unexpected_response"
    ),
    ErrorClass.SYNC_TOKEN_EXPIRED: Route(Destination.FULL_SYNC_FALLBACK, False, False, None, None),
    ErrorClass.CLIENT: Route(
        Destination.CLIENT_GATE, True, False, Outcome.CLIENT_FAILURE, "client"
    ),
}

_SKIP_OUTCOMES = {
    SkipReason.INVALID_TOKEN: Outcome.INVALID_TOKEN,
    SkipReason.CIRCUIT_OPEN: Outcome.CIRCUIT_OPEN,
    SkipReason.MASS_DELETE_HELD: Outcome.MASS_DELETE_HELD,
}


def route(error_class: ErrorClass) -> Route:
    """Auth goes to token health, quota defers, transient and unexpected count toward the breaker,
    an expired sync token falls back to a full sync (not a failure), and a refused OAuth client
    stops run-due using that client for the run (no user is judged by it)."""
    return _ROUTES[error_class]


def outcome_of(
    result: Result,
    *,
    changed: bool = False,
    skip_reason: SkipReason | None = None,
    error_class: ErrorClass | None = None,
) -> Outcome:
    """An attempt's outcome: success by whether it changed anything, a skip by its reason, a
    failure by its error's route (an unclassified failure counts as transient)."""
    if result is Result.SUCCESS:
        return Outcome.CHANGED if changed else Outcome.UNCHANGED
    if result is Result.SKIPPED:
        if skip_reason is None:
            raise ValueError("a skipped attempt needs a skip reason")
        return _SKIP_OUTCOMES[skip_reason]
    routed = route(error_class).outcome if error_class is not None else None
    return routed or Outcome.TRANSIENT_FAILURE
