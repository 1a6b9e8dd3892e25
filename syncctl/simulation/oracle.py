"""The oracle: the fewest Google requests that could have mirrored every change of a run.

An oracle knows when each change happens and where. It needs one request per change burst:
one listing (the contacts, or one calendar's events) that holds changes made at one moment,
read once right after that moment. Before it, a request needs a live access token: a user's
first burst needs a token refresh, and so does any burst at or after the moment the last token
expired (`token_seconds` after its refresh). Both integrations of a user share one token.

Not counted: bursts no request could have mirrored (a revoked user's after the revocation, a
failing user's once every request fails), and each pair's first full sync, which every policy
makes once whatever it does afterwards (the contract's bound counts the bursts only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncctl.simulation.stage import Change


@dataclass(frozen=True)
class Oracle:
    """The lower bound of one run, and what it is made of."""

    bursts: int  # one request each
    refreshes: int  # token refreshes those bursts need
    unreachable_bursts: int  # after the user's grant was revoked or every request failed

    @property
    def calls(self) -> int:
        """The lower bound in requests."""
        return self.bursts + self.refreshes

    def as_dict(self) -> dict:
        """Plain data for JSON."""
        return {
            "calls": self.calls,
            "bursts": self.bursts,
            "refreshes": self.refreshes,
            "unreachable_bursts": self.unreachable_bursts,
        }


def oracle_bound(
    changes: Iterable[Change],
    *,
    token_seconds: int,
    cut_off: Mapping[str, datetime] | None = None,
) -> Oracle:
    """The oracle's requests for these changes; `cut_off` maps a user to the moment from which
    no request of theirs can succeed (revocation, permanent failure)."""
    cut_off = cut_off or {}
    bursts: set[tuple[str, datetime, str]] = set()
    unreachable: set[tuple[str, datetime, str]] = set()
    for change in changes:
        burst = (change.user_id, change.at, change.listing or change.integration.value)
        limit = cut_off.get(change.user_id)
        (unreachable if limit is not None and change.at >= limit else bursts).add(burst)
    moments: dict[str, set[datetime]] = {}
    for user_id, at, _ in bursts:
        moments.setdefault(user_id, set()).add(at)
    lifetime = timedelta(seconds=token_seconds)
    refreshes = 0
    for times in moments.values():
        valid_until: datetime | None = None
        for at in sorted(times):
            if valid_until is None or at >= valid_until:
                refreshes += 1
                valid_until = at + lifetime
    return Oracle(len(bursts), refreshes, len(unreachable))


def ratio(calls: int, oracle: Oracle) -> float | None:
    """A policy's calls as a multiple of the oracle's (None when the oracle needs none)."""
    if oracle.calls == 0:
        return None
    return round(calls / oracle.calls, 2)
