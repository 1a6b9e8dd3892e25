"""Syncs that ride on an access token another sync just made fresh (issue 10, token refreshes).

An access token lives one hour; a pair polled every few days refreshes it at almost every
poll. When a notified calendar sync has just refreshed it, another pair of the same user that
is due soon anyway runs right then instead, on the same token: its poll sends no refresh.

Choices where the contract is silent:
- "Soon" is within `fresh_token_early_fraction` (a quarter) of the pair's current interval:
  18 h of a 3-day contacts poll, 36 h of a 6-day one. Running early shortens that one
  interval; at worst a pair polls a quarter more often, each poll one request (the refresh)
  cheaper, and a busy user's notified syncs come often enough that the pull is usually hours.
- "Fresh" is the stored token's expiry beyond the refresh margin, the same test the
  attempt's own token step applies (`token_health.needs_refresh`), so the early poll really
  sends no refresh.
- Only a pair the gate would let through is pulled forward (never a revoked grant, an open or
  half-open breaker, or a held mass delete): an early attempt never writes a skip row.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from syncctl.config import Settings


def due_on_fresh_token(
    next_sync_at: datetime,
    interval_seconds: int,
    now: datetime,
    settings: Settings,
    *,
    token_valid_until: datetime | None,
) -> bool:
    """Whether a pair runs now on a token another sync made fresh: it falls due within the
    early fraction of its interval, and the token outlives the refresh margin."""
    if token_valid_until is None:
        return False
    if token_valid_until <= now + timedelta(seconds=settings.token_refresh_margin_seconds):
        return False
    window = interval_seconds * settings.fresh_token_early_fraction
    return next_sync_at <= now + timedelta(seconds=window)
