"""Error routing (SPEC 3.3): each error class has exactly one destination."""

import pytest

from syncctl.model import ErrorClass
from syncctl.policy.routing import Destination, Route, route
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
