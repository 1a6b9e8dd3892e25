"""The `fleet_breaker` table: one row per Google API (see syncctl.policy.fleet_breaker)."""

from __future__ import annotations

import sqlite3

COLUMNS = (
    "api",
    "state",
    "window_started_at",
    "attempts",
    "transient_failures",
    "opened_at",
    "last_probe_at",
    "last_failure_reason",
    "consecutive_failures",
    "last_evidence_at",
)


def load_fleet_breakers(conn: sqlite3.Connection) -> list[dict]:
    """Every stored fleet breaker row, by API (timestamps as stored ISO strings)."""
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM fleet_breaker ORDER BY api").fetchall()
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def save_fleet_breakers(conn: sqlite3.Connection, rows: list[dict]) -> None:
    """Store fleet breaker rows (inside the caller's transaction)."""
    marks = ", ".join("?" * len(COLUMNS))
    conn.executemany(
        f"INSERT OR REPLACE INTO fleet_breaker ({', '.join(COLUMNS)}) VALUES ({marks})",
        [[row.get(name) for name in COLUMNS] for row in rows],
    )


def reset_fleet_breakers(conn: sqlite3.Connection) -> int:
    """Close every fleet breaker and forget its evidence; returns how many were open."""
    opened = conn.execute("SELECT count(*) FROM fleet_breaker WHERE state != 'closed'").fetchone()
    conn.execute(
        "UPDATE fleet_breaker SET state = 'closed', window_started_at = NULL, attempts = 0,"
        " transient_failures = 0, opened_at = NULL, consecutive_failures = 0"
    )
    return int(opened[0])
