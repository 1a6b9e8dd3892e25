"""The quota budget's rule (SPEC 8): a request is granted while the sliding minute has room."""

from __future__ import annotations

import math

import pytest

from syncctl.policy.quota import (
    grantable,
    may_spend,
    reservation_size,
    wait_for_room,
    window_start,
)

NOW = 1_000_000.25  # a quarter past a whole second


@pytest.mark.parametrize(
    ("used", "requested", "budget", "granted"),
    [
        (0, 1, 10, True),
        (9, 1, 10, True),  # the tenth of ten
        (10, 1, 10, False),
        (7, 3, 10, True),
        (8, 3, 10, False),
        (0, 11, 10, False),  # more than a whole minute's budget
    ],
)
def test_may_spend_while_the_sliding_minute_stays_within_the_budget(
    used, requested, budget, granted
):
    assert may_spend(used, requested=requested, budget=budget) is granted


@pytest.mark.parametrize(
    ("buckets", "requested", "budget", "wait"),
    [
        ([], 1, 10, 0.0),
        ([(999_990, 9)], 1, 10, 0.0),
        ([(999_990, 10)], 1, 10, 999_990 + 61 - NOW),
        # the oldest bucket that still counts is 60 whole seconds back; older ones have left
        ([(999_940, 10)], 1, 10, 999_940 + 61 - NOW),
        ([(999_939, 10)], 1, 10, 0.0),
        # the wait is until enough has left, oldest first
        ([(999_950, 4), (999_970, 4), (1_000_000, 2)], 3, 10, 11 - 0.25),
        ([(999_950, 4), (999_970, 4), (1_000_000, 2)], 6, 10, 31 - 0.25),
        ([(1_000_000, 10)], 1, 10, 61 - 0.25),
        ([], 11, 10, math.inf),  # never: more than a whole minute's budget
    ],
)
def test_wait_for_room_is_until_enough_of_the_window_has_left(buckets, requested, budget, wait):
    assert wait_for_room(buckets, now=NOW, requested=requested, budget=budget) == wait


def test_a_wait_it_names_is_long_enough_and_no_longer():
    buckets = [(999_950, 4), (999_970, 4), (1_000_000, 2)]
    wait = wait_for_room(buckets, now=NOW, requested=3, budget=10)

    assert wait_for_room(buckets, now=NOW + wait, requested=3, budget=10) == 0.0
    assert wait_for_room(buckets, now=NOW + wait - 0.5, requested=3, budget=10) > 0


def test_the_window_covers_every_real_minute_ending_now():
    # A grant at `now` sees every bucket a minute [t, t + 60) containing `now` can touch.
    assert window_start(NOW) == 999_940
    assert window_start(1_000_000.0) == 999_940


@pytest.mark.parametrize(
    ("budget", "size"),
    [
        (1, 1),
        (50, 1),
        (239, 1),  # small budgets: one grant at a time, exactly as without reservations
        (240, 2),
        (1200, 10),
        (3840, 32),
        (9000, 32),  # the default budget: at most RESERVATION_MAX
        (1_000_000, 32),
    ],
)
def test_a_process_reserves_a_small_share_of_a_seconds_budget(budget, size):
    assert reservation_size(budget) == size


@pytest.mark.parametrize(
    ("used", "wanted", "budget", "granted"),
    [
        (0, 32, 9000, 32),
        (8990, 32, 9000, 10),  # what is left of the minute, not more
        (9000, 32, 9000, 0),
        (9005, 1, 9000, 0),  # over (a smaller budget configured later): nothing
        (49, 1, 50, 1),
    ],
)
def test_a_reservation_is_granted_only_what_fits_in_the_sliding_minute(
    used, wanted, budget, granted
):
    assert grantable(used, wanted=wanted, budget=budget) == granted
