"""The oracle lower bound: what a poller that knew when Google changed would have to send.

One request per change burst (the changes of one user's integration at one moment: a single
incremental listing fetches them all) plus the token refreshes those requests need: an access
token lives `token_seconds` less the refresh margin, and one refresh covers every burst of the
user (both integrations) within that span. No channel upkeep, no safety polls, no calendar
list, no retries: nothing can do with fewer calls, so each policy's ratio to it says how far
from ideal it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from syncctl.simulation.stage import Change


def oracle_calls(changes: Iterable[Change], *, token_seconds: int, margin_seconds: int) -> int:
    """One request per (user, integration, moment) burst plus the refreshes those need."""
    bursts = {(c.user_id, c.integration, c.at) for c in changes}
    usable = timedelta(seconds=max(1, token_seconds - margin_seconds))
    moments: dict[str, list] = {}
    for user_id, _, at in bursts:
        moments.setdefault(user_id, []).append(at)
    refreshes = 0
    for times in moments.values():
        valid_until = None
        for at in sorted(times):
            if valid_until is None or at >= valid_until:
                refreshes += 1
                valid_until = at + usable
    return len(bursts) + refreshes
