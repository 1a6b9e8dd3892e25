"""The `sync_leases` table: who syncs a (user, integration) pair right now, and until when."""

from __future__ import annotations

import sqlite3

from syncctl.clock import from_iso, to_iso
from syncctl.model import Lease


def load_lease(conn: sqlite3.Connection, user_id: str, integration_type: str) -> Lease | None:
    """The pair's lease row, expired or not (None when nobody ever held it or it was released)."""
    row = conn.execute(
        "SELECT holder, expires_at FROM sync_leases WHERE user_id = ? AND integration_type = ?",
        [user_id, integration_type],
    ).fetchone()
    if row is None:
        return None
    return Lease(user_id, integration_type, row[0], from_iso(row[1]))


def save_lease(conn: sqlite3.Connection, lease: Lease) -> None:
    """Store a lease the policy granted (replacing an expired or abandoned one)."""
    conn.execute(
        "INSERT OR REPLACE INTO sync_leases (user_id, integration_type, holder, expires_at)"
        " VALUES (?, ?, ?, ?)",
        [lease.user_id, lease.integration_type, lease.holder, to_iso(lease.expires_at)],
    )


def save_lease_if_free(conn: sqlite3.Connection, lease: Lease) -> bool:
    """Store a lease granted to a free pair, if the pair indeed has no lease row; whether it did
    (one statement for the common case: the last holder released it)."""
    cursor = conn.execute(
        "INSERT INTO sync_leases (user_id, integration_type, holder, expires_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, integration_type) DO NOTHING",
        [lease.user_id, lease.integration_type, lease.holder, to_iso(lease.expires_at)],
    )
    return cursor.rowcount == 1


def delete_lease(conn: sqlite3.Connection, user_id: str, integration_type: str) -> None:
    """Remove the pair's lease row (the caller checked it is the holder's)."""
    conn.execute(
        "DELETE FROM sync_leases WHERE user_id = ? AND integration_type = ?",
        [user_id, integration_type],
    )


def list_leases(conn: sqlite3.Connection) -> list[Lease]:
    """Every stored lease, by user and integration."""
    rows = conn.execute(
        "SELECT user_id, integration_type, holder, expires_at FROM sync_leases"
        " ORDER BY user_id, integration_type"
    ).fetchall()
    return [Lease(u, i, h, from_iso(e)) for u, i, h, e in rows]
