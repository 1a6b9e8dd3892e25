"""Pairs whose sync the mass-delete guard held (SPEC 3): not due until an operator acts.

`mass_delete_holds(user_id, integration_type, mirror, mirrored, deleting, held_at)`: one row a
held pair, written with the attempt that was held and deleted by the one that applies or
re-fetches without being held again.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from syncctl.clock import to_iso
from syncctl.model import Integration


@dataclass(frozen=True)
class Hold:
    """A held pair: which mirror, how many rows it held and how many the sync would delete."""

    user_id: str
    integration: Integration
    mirror: str
    mirrored: int
    deleting: int
    held_at: str


def load_hold(conn: sqlite3.Connection, user_id: str, integration: Integration) -> Hold | None:
    """The pair's hold, or None."""
    row = conn.execute(
        "SELECT mirror, mirrored, deleting, held_at FROM mass_delete_holds"
        " WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    return None if row is None else Hold(user_id, integration, *row)


def save_hold(
    conn: sqlite3.Connection,
    user_id: str,
    integration: Integration,
    *,
    mirror: str,
    mirrored: int,
    deleting: int,
    now: datetime,
) -> None:
    """Record (or refresh) the pair's hold."""
    conn.execute(
        "INSERT INTO mass_delete_holds"
        " (user_id, integration_type, mirror, mirrored, deleting, held_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(user_id, integration_type) DO UPDATE SET"
        " mirror = excluded.mirror, mirrored = excluded.mirrored,"
        " deleting = excluded.deleting, held_at = excluded.held_at",
        [user_id, integration.value, mirror, mirrored, deleting, to_iso(now)],
    )


def clear_hold(conn: sqlite3.Connection, user_id: str, integration: Integration) -> bool:
    """Delete the pair's hold; whether there was one."""
    cursor = conn.execute(
        "DELETE FROM mass_delete_holds WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    )
    return cursor.rowcount > 0


def list_holds(conn: sqlite3.Connection, user_id: str | None = None) -> list[Hold]:
    """Every held pair (optionally of one user), oldest first."""
    rows = conn.execute(
        "SELECT user_id, integration_type, mirror, mirrored, deleting, held_at"
        " FROM mass_delete_holds WHERE ? IS NULL OR user_id = ? ORDER BY held_at, user_id",
        [user_id, user_id],
    )
    return [Hold(u, Integration(i), m, n, d, at) for u, i, m, n, d, at in rows]
