"""The shared quota budget (SPEC 8): may a request be sent now, or how long until it may."""

from __future__ import annotations

import math
from collections.abc import Sequence

WINDOW_SECONDS = 60
# A grant is checked against the buckets of the 61 whole seconds ending with its own: any real
# minute [t, t + 60) touches at most those, so no sliding minute ever holds more than the budget.
WINDOW_BUCKETS = WINDOW_SECONDS + 1


def window_start(now: float) -> int:
    """The oldest one-second bucket that still counts against a request made at `now`."""
    return math.floor(now) - WINDOW_SECONDS


# A process takes up to this many grants in one transaction (see reservation_size).
RESERVATION_MAX = 32
# ... and at most this share of the budget's per-minute rate, so a small budget is granted one
# request at a time and no process holds much of a busy minute it may not use.
RESERVATION_SHARE = 120


def reservation_size(budget: int) -> int:
    """How many grants one process reserves per write transaction: a fraction of a second's
    share of the per-minute `budget` (1 for budgets under 240 a minute), at most RESERVATION_MAX.
    Reserved grants are spent only within the second they are recorded in; the rest are given
    back, so the buckets never count fewer requests than were sent."""
    return max(1, min(RESERVATION_MAX, budget // RESERVATION_SHARE))


def grantable(used: int, *, wanted: int, budget: int) -> int:
    """How many of `wanted` grants fit beside the `used` ones of the sliding minute."""
    return max(0, min(wanted, budget - used))


def may_spend(used: int, *, requested: int, budget: int) -> bool:
    """Grant `requested` requests when they and the `used` ones of the sliding minute before
    now stay within the per-minute `budget`."""
    return used + requested <= budget


def wait_for_room(
    buckets: Sequence[tuple[int, int]], *, now: float, requested: int, budget: int
) -> float:
    """Seconds from `now` until enough of the window's per-second buckets `(second, used)` have
    left it for `requested` more requests to fit (0 if they fit now, inf if they never will)."""
    live = sorted((second, used) for second, used in buckets if second >= window_start(now))
    used = sum(count for _, count in live)
    if may_spend(used, requested=requested, budget=budget):
        return 0.0
    if requested > budget:
        return math.inf
    for second, count in live:  # oldest first: bucket `second` stops counting at second + 61
        used -= count
        if may_spend(used, requested=requested, budget=budget):
            return second + WINDOW_BUCKETS - now
    return math.inf  # unreachable: an empty window fits any request within the budget
