"""Error routing (SPEC 3.3): each error class has exactly one destination."""

import pytest

from syncctl.model import ErrorClass, Result, SkipReason
from syncctl.policy.routing import Destination, Route, outcome_of, route
from syncctl.policy.schedule import Outcome


@pytest.mark.parametrize(
    ("error_class", "expected"),
    [
        pytest.param(
            ErrorClass.AUTH,
            Route(Destination.TOKEN_HEALTH, True, False, Outcome.AUTH_FAILURE, "auth"),
            id="auth-to-token-health-never-breaker",
        ),
        pytest.param(
            ErrorClass.QUOTA,
            Route(Destination.QUOTA_DEFER, True, False, Outcome.QUOTA_FAILURE, "quota"),
            id="quota-defers-failure-without-breaker",
        ),
        pytest.param(
            ErrorClass.TRANSIENT,
            Route(Destination.BREAKER, True, True, Outcome.TRANSIENT_FAILURE, "transient"),
            id="transient-counts-toward-breaker",
        ),
        pytest.param(
            ErrorClass.OTHER,
            Route(
                Destination.BREAKER, True, True, Outcome.TRANSIENT_FAILURE, "unexpected_response"
            ),
            id="unexpected-response-counts-toward-breaker",
        ),
        pytest.param(
            ErrorClass.SYNC_TOKEN_EXPIRED,
            Route(Destination.FULL_SYNC_FALLBACK, False, False, None, None),
            id="expired-sync-token-is-not-a-failure",
        ),
    ],
)
def test_each_error_class_routes_to_one_destination(
    error_class: ErrorClass, expected: Route
) -> None:
    assert route(error_class) == expected


def test_every_error_class_has_a_route() -> None:
    assert {route(c).destination for c in ErrorClass} == set(Destination)


@pytest.mark.parametrize(
    ("result", "kwargs", "expected"),
    [
        pytest.param(Result.SUCCESS, {"changed": True}, Outcome.CHANGED, id="success-changed"),
        pytest.param(Result.SUCCESS, {}, Outcome.UNCHANGED, id="success-unchanged"),
        pytest.param(
            Result.SKIPPED,
            {"skip_reason": SkipReason.INVALID_TOKEN},
            Outcome.INVALID_TOKEN,
            id="skip-invalid-token",
        ),
        pytest.param(
            Result.SKIPPED,
            {"skip_reason": SkipReason.CIRCUIT_OPEN},
            Outcome.CIRCUIT_OPEN,
            id="skip-circuit-open",
        ),
        pytest.param(
            Result.FAILURE, {"error_class": ErrorClass.AUTH}, Outcome.AUTH_FAILURE, id="auth"
        ),
        pytest.param(
            Result.FAILURE, {"error_class": ErrorClass.QUOTA}, Outcome.QUOTA_FAILURE, id="quota"
        ),
        pytest.param(
            Result.FAILURE,
            {"error_class": ErrorClass.TRANSIENT},
            Outcome.TRANSIENT_FAILURE,
            id="transient",
        ),
        pytest.param(
            Result.FAILURE,
            {"error_class": ErrorClass.OTHER},
            Outcome.TRANSIENT_FAILURE,
            id="unexpected",
        ),
        pytest.param(Result.FAILURE, {}, Outcome.TRANSIENT_FAILURE, id="unclassified"),
        pytest.param(
            Result.FAILURE,
            {"error_class": ErrorClass.SYNC_TOKEN_EXPIRED},
            Outcome.TRANSIENT_FAILURE,
            id="escaped-sync-token-expiry",
        ),
    ],
)
def test_outcome_of_an_attempt(result: Result, kwargs: dict, expected: Outcome) -> None:
    assert outcome_of(result, **kwargs) is expected


def test_skip_without_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="skip reason"):
        outcome_of(Result.SKIPPED)
