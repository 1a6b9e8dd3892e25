"""The mass-delete guard's threshold (SPEC 3): over the share AND at least the minimum is held."""

from __future__ import annotations

import pytest

from syncctl.config import Settings
from syncctl.policy.mass_delete import Deletions, hold_deletions, may_sync_held_pair

DEFAULTS = Settings()


@pytest.mark.parametrize(
    ("mirrored", "deleting", "held"),
    [
        (40, 21, True),  # 52% and 21 items: held
        (40, 40, True),  # the whole mirror
        (39, 20, True),  # 51% and exactly the minimum
        (1000, 501, True),  # just over half of a large mirror
        (100, 12, False),  # 12%: applied
        (20, 15, False),  # 75%, but 15 of 20 is under the 20-item minimum: applied
        (19, 19, False),  # a whole small mirror: under the minimum
        (40, 20, False),  # exactly 50% is not over 50%
        (1000, 500, False),
        (10_000, 4_000, False),  # many items, but 40%
        (0, 0, False),
    ],
)
def test_hold_deletions_over_half_and_at_least_twenty_by_default(mirrored, deleting, held):
    deletions = Deletions("contacts", mirrored, deleting)

    assert hold_deletions(deletions, DEFAULTS) is held


@pytest.mark.parametrize(("mirrored", "deleting"), [(40, 40), (1000, 999)])
def test_an_operator_allowed_mass_delete_is_applied(mirrored, deleting):
    assert not hold_deletions(Deletions("contacts", mirrored, deleting), DEFAULTS, allowed=True)


@pytest.mark.parametrize(
    ("share", "minimum", "mirrored", "deleting", "held"),
    [
        (0.1, 5, 40, 5, True),  # 12.5% of 40 is over a 10% share
        (0.1, 5, 50, 5, False),  # exactly 10%
        (0.1, 5, 40, 4, False),  # under a minimum of 5
        (1.0, 1, 10, 10, False),  # a share of 1 never holds: nothing is over 100%
        (0.5, 1, 1, 1, True),  # a minimum of 1 guards even a single-row mirror
    ],
)
def test_thresholds_come_from_settings(share, minimum, mirrored, deleting, held):
    settings = Settings(mass_delete_share=share, mass_delete_min_items=minimum)

    assert hold_deletions(Deletions("contacts", mirrored, deleting), settings) is held


@pytest.mark.parametrize(
    ("held", "allow", "full", "may_sync"),
    [
        (False, False, False, True),
        (True, False, False, False),  # held: skipped, no Google call
        (True, True, False, True),  # --allow-mass-delete applies
        (True, False, True, True),  # --full re-fetches
        (True, True, True, True),
    ],
)
def test_a_held_pair_syncs_again_only_when_an_operator_says_how(held, allow, full, may_sync):
    assert may_sync_held_pair(held, allow_mass_delete=allow, full=full) is may_sync
