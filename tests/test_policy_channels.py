"""policy.channels.upkeep_needed: when a calendar attempt's channel upkeep has anything to do."""

from __future__ import annotations

import pytest

from syncctl.policy.channels import upkeep_needed


@pytest.mark.parametrize(
    ("address", "open_channels", "needed"),
    [
        (None, False, False),  # no address, nothing to stop: no call, no write
        (None, True, True),  # channels left from when an address was set: stopped
        ("https://hooks.example.com/w", False, True),  # channels to open
        ("https://hooks.example.com/w", True, True),  # channels to keep or renew
    ],
)
def test_upkeep_is_needed_with_an_address_or_an_open_channel(address, open_channels, needed):
    assert upkeep_needed(address, open_channels) is needed
