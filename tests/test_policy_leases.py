"""policy/leases.py: who may sync a pair, table by table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import Settings
from syncctl.model import Lease
from syncctl.policy.leases import LeaseVerdict, acquire, may_release

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings(lease_seconds=600)
PAIR = ("u1", "google_calendar")


def held(by: str, expires_in: timedelta) -> Lease:
    return Lease(*PAIR, by, NOW + expires_in)


# id: (the current lease's holder and time left, None: free; whether that holder's process
# runs, None: not known here; granted; verdict)
ACQUIRE_CASES = {
    "free": (None, None, True, LeaseVerdict.FREE),
    "held-live": (("other", timedelta(minutes=5)), True, False, LeaseVerdict.HELD),
    "held-other-host": (("other", timedelta(minutes=5)), None, False, LeaseVerdict.HELD),
    "held-one-second-left": (("other", timedelta(seconds=1)), True, False, LeaseVerdict.HELD),
    "expires-now": (("other", timedelta(0)), True, True, LeaseVerdict.EXPIRED),
    "expired": (("other", -timedelta(hours=1)), None, True, LeaseVerdict.EXPIRED),
    "holder-dead": (("other", timedelta(minutes=5)), False, True, LeaseVerdict.HOLDER_GONE),
    "own-lease-not-retaken": (("me", timedelta(minutes=5)), False, False, LeaseVerdict.HELD),
}


@pytest.mark.parametrize(
    ("lease", "alive", "granted", "verdict"), ACQUIRE_CASES.values(), ids=ACQUIRE_CASES
)
def test_a_lease_is_granted_only_when_free_expired_or_abandoned(lease, alive, granted, verdict):
    current = None if lease is None else held(*lease)
    decision = acquire(
        current,
        user_id=PAIR[0],
        integration_type=PAIR[1],
        holder="me",
        now=NOW,
        settings=SETTINGS,
        holder_alive=alive,
    )

    assert (decision.granted, decision.verdict) == (granted, verdict)
    if granted:
        assert decision.lease == Lease(*PAIR, "me", NOW + timedelta(seconds=600))
    else:
        assert decision.lease == current


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (None, False),
        (held("me", timedelta(minutes=1)), True),
        (held("me", -timedelta(minutes=1)), True),
        (held("other", timedelta(minutes=1)), False),
    ],
)
def test_only_the_holder_releases_its_lease(current, expected):
    assert may_release(current, "me") is expected
