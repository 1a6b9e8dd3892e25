"""Per-pair leases (SPEC 5): one process at a time syncs a (user, integration) pair.

A lease names its holder (`host/pid/nonce`) and an expiry. An attempt may take the pair's
lease when nobody holds it, when the holder's lease has expired (a killed process, or one
that outlived its lease), or when the holder is a process of this host that no longer runs
(the caller checks that at the edge and passes `holder_alive`): a receiver restarted after a
SIGKILL takes its pairs back at once instead of waiting out the lease. A held lease of a live
holder is never taken, however long it has left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from syncctl.config import Settings
from syncctl.model import Lease


class LeaseVerdict(StrEnum):
    """Why a lease was granted or refused."""

    FREE = "free"  # nobody held the pair
    EXPIRED = "expired"  # the holder's lease ran out: taken over
    HOLDER_GONE = "holder_gone"  # the holder's process is dead on this host: taken over
    HELD = "held"  # a live holder has it: refused


@dataclass(frozen=True)
class LeaseDecision:
    """Whether `holder` may sync the pair now, and the lease to store if so."""

    granted: bool
    verdict: LeaseVerdict
    lease: Lease | None  # the new lease when granted; the current one when refused


def acquire(
    current: Lease | None,
    *,
    user_id: str,
    integration_type: str,
    holder: str,
    now: datetime,
    settings: Settings,
    holder_alive: bool | None = None,
) -> LeaseDecision:
    """Grant a lease of `lease_seconds` when the pair is free, expired, or its holder is dead."""
    new = Lease(user_id, integration_type, holder, now + timedelta(seconds=settings.lease_seconds))
    if current is None:
        return LeaseDecision(True, LeaseVerdict.FREE, new)
    if current.expires_at <= now:
        return LeaseDecision(True, LeaseVerdict.EXPIRED, new)
    if holder_alive is False and current.holder != holder:
        return LeaseDecision(True, LeaseVerdict.HOLDER_GONE, new)
    return LeaseDecision(False, LeaseVerdict.HELD, current)


def may_release(current: Lease | None, holder: str) -> bool:
    """Only the holder releases its lease; one taken over meanwhile belongs to the new holder."""
    return current is not None and current.holder == holder
