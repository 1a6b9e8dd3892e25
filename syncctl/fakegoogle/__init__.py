"""A fake Google (People v1, Calendar v3, OAuth) on loopback, for tests, demo and simulator."""

from syncctl.fakegoogle.channels import SentNotification
from syncctl.fakegoogle.fake import FakeGoogle
from syncctl.fakegoogle.faults import ENDPOINTS
from syncctl.fakegoogle.fleet import seed_fleet, write_credentials
from syncctl.fakegoogle.state import ALL_SCOPES

__all__ = [
    "ALL_SCOPES",
    "ENDPOINTS",
    "FakeGoogle",
    "SentNotification",
    "seed_fleet",
    "write_credentials",
]
