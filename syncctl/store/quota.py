"""The quota budget's table: requests sent per API per whole second (SPEC 8).

`quota_usage(api, second, used)`: `second` is Unix time floored; a row is written in the same
transaction that decides to grant it, so threads and processes on one database share one count.
Rows older than an hour are pruned as new ones are written.
"""

from __future__ import annotations

import sqlite3

KEEP_SECONDS = 3600


def load_window(conn: sqlite3.Connection, api: str, since: int) -> list[tuple[int, int]]:
    """`(second, used)` of an API from `since` on."""
    rows = conn.execute(
        "SELECT second, used FROM quota_usage WHERE api = ? AND second >= ?", [api, since]
    )
    return [(int(second), int(used)) for second, used in rows]


def window_total(conn: sqlite3.Connection, api: str, since: int) -> int:
    """Requests of an API granted from `since` on."""
    row = conn.execute(
        "SELECT coalesce(sum(used), 0) FROM quota_usage WHERE api = ? AND second >= ?",
        [api, since],
    ).fetchone()
    return int(row[0])


def record_spend(conn: sqlite3.Connection, api: str, second: int, count: int) -> None:
    """Add `count` granted requests to an API's bucket (call in the deciding transaction)."""
    conn.execute(
        "INSERT INTO quota_usage (api, second, used) VALUES (?, ?, ?)"
        " ON CONFLICT(api, second) DO UPDATE SET used = used + excluded.used",
        [api, second, count],
    )


def give_back(conn: sqlite3.Connection, api: str, second: int, count: int) -> None:
    """Take `count` reserved and unsent requests out of an API's bucket (never below zero)."""
    conn.execute(
        "UPDATE quota_usage SET used = max(0, used - ?) WHERE api = ? AND second = ?",
        [count, api, second],
    )


def prune(conn: sqlite3.Connection, now_second: int) -> None:
    """Forget buckets older than an hour."""
    conn.execute("DELETE FROM quota_usage WHERE second < ?", [now_second - KEEP_SECONDS])


def usage_since(conn: sqlite3.Connection, since: int) -> dict[str, int]:
    """Requests granted per API from `since` on."""
    rows = conn.execute(
        "SELECT api, sum(used) FROM quota_usage WHERE second >= ? GROUP BY api", [since]
    )
    return {api: int(total) for api, total in rows}


def peak_minute(conn: sqlite3.Connection, api: str, since: int) -> int:
    """The most requests an API was granted in any whole minute from `since` on."""
    row = conn.execute(
        "SELECT max(total) FROM (SELECT sum(used) AS total FROM quota_usage"
        " WHERE api = ? AND second >= ? GROUP BY second / 60)",
        [api, since],
    ).fetchone()
    return int(row[0] or 0)
