"""Sync tokens per (user, integration, scope): the cursor of each incremental sync.

A token is saved only inside the transaction that writes the data it covers (the last page of
a sync), so a stored token never claims data the database does not hold. A token that covers
no data (an incremental listing that found nothing) may wait for the attempt's record instead
(`PendingToken`): lost with a crash, the old token replays nothing. Scopes: contacts
`connections` and `contact_groups`; calendar `calendar_list` and `events:<calendar_id>`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from syncctl.clock import from_iso, to_iso
from syncctl.model import Integration

EVENTS_SCOPE_PREFIX = "events:"
CALENDAR_LIST_SCOPE = "calendar_list"


@dataclass(frozen=True)
class PendingToken:
    """A scope's new sync token that covers no data, stored with the attempt's record."""

    integration: Integration
    scope: str
    token: str
    issued_at: datetime


def events_scope(calendar_id: str) -> str:
    """The sync-token scope of one calendar's events."""
    return EVENTS_SCOPE_PREFIX + calendar_id


def load_sync_token(
    conn: sqlite3.Connection, user_id: str, integration: Integration, scope: str
) -> str | None:
    """The stored sync token of a scope, or None (a full sync is needed)."""
    row = conn.execute(
        "SELECT token FROM sync_tokens WHERE user_id = ? AND integration_type = ? AND scope = ?",
        [user_id, integration.value, scope],
    ).fetchone()
    return None if row is None else str(row[0])


def has_sync_tokens(conn: sqlite3.Connection, user_id: str, integration: Integration) -> bool:
    """Whether any scope of the pair has a sync token (else its next sync is a full one)."""
    row = conn.execute(
        "SELECT 1 FROM sync_tokens WHERE user_id = ? AND integration_type = ? LIMIT 1",
        [user_id, integration.value],
    ).fetchone()
    return row is not None


def save_sync_token(
    conn: sqlite3.Connection,
    user_id: str,
    integration: Integration,
    scope: str,
    token: str,
    *,
    now: datetime,
) -> None:
    """Store a scope's new sync token (call inside the transaction holding its data)."""
    conn.execute(
        "INSERT INTO sync_tokens (user_id, integration_type, scope, token, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT(user_id, integration_type, scope)"
        " DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at",
        [user_id, integration.value, scope, token, to_iso(now)],
    )


def save_pending_tokens(
    conn: sqlite3.Connection, user_id: str, tokens: Iterable[PendingToken]
) -> None:
    """Store the tokens a sync left pending (inside the transaction of the attempt's record)."""
    for pending in tokens:
        save_sync_token(
            conn, user_id, pending.integration, pending.scope, pending.token, now=pending.issued_at
        )


def delete_sync_token(
    conn: sqlite3.Connection, user_id: str, integration: Integration, scope: str
) -> None:
    """Forget a scope's sync token (expired, or the scope is gone)."""
    conn.execute(
        "DELETE FROM sync_tokens WHERE user_id = ? AND integration_type = ? AND scope = ?",
        [user_id, integration.value, scope],
    )


def sync_token_updated_at(
    conn: sqlite3.Connection, user_id: str, integration: Integration, scope: str
) -> datetime | None:
    """When a scope's sync token was last stored (its last successful listing), or None."""
    row = conn.execute(
        "SELECT updated_at FROM sync_tokens WHERE user_id = ? AND integration_type = ?"
        " AND scope = ?",
        [user_id, integration.value, scope],
    ).fetchone()
    return from_iso(row[0]) if row else None
