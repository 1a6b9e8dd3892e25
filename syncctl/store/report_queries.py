"""Read-only SQL behind `syncctl report`: every query is a range or point lookup on an index.

Each function takes an optional `user_id`; None means the whole fleet. Timestamps are the stored
fixed-width UTC ISO strings, so string comparison orders them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from syncctl.clock import from_iso, to_iso
from syncctl.model import RECONNECT_NOTICE
from syncctl.store.schema import ROLLUP_TABLE

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class WindowGroup:
    """Attempts in the window sharing a day, pair kind, trigger, result and attribution."""

    day: str
    integration_type: str
    trigger: str
    result: str
    skip_reason: str | None
    saved_by: str | None
    error_class: str | None
    attempts: int
    api_calls_made: int
    api_calls_saved: int
    full_resyncs: int
    items_processed: int


@dataclass(frozen=True)
class PairFreshness:
    """An enabled pair, its last successful sync (None if never) and its current interval."""

    user_id: str
    integration_type: str
    last_success_at: str | None
    interval_seconds: int | None


def _user_filter(column: str, user_id: str | None) -> tuple[str, list[str]]:
    if user_id is None:
        return "", []
    return f" AND {column} = ?", [user_id]


def _time_column(user_id: str | None) -> str:
    """For one user, `+created_at` keeps SQLite off the fleet-wide time index (which would scan
    every user's rows in the window) and on the (user_id, integration_type, created_at) one."""
    return "created_at" if user_id is None else "+created_at"


def count_users(conn: sqlite3.Connection, user_id: str | None) -> tuple[int, int]:
    """(users, users with at least one integration)."""
    where, args = _user_filter("id", user_id)
    users = conn.execute(f"SELECT count(*) FROM users WHERE 1 = 1{where}", args).fetchone()[0]
    where, args = _user_filter("user_id", user_id)
    with_integrations = conn.execute(
        f"SELECT count(DISTINCT user_id) FROM user_integrations WHERE 1 = 1{where}", args
    ).fetchone()[0]
    return int(users), int(with_integrations)


def integration_counts(conn: sqlite3.Connection, user_id: str | None) -> list[tuple[str, int, int]]:
    """(integration_type, enabled pairs, pairs whose token is not revoked)."""
    where, args = _user_filter("i.user_id", user_id)
    return conn.execute(
        "SELECT i.integration_type, count(*),"
        " sum(coalesce(t.status, 'unknown') != 'revoked')"
        " FROM user_integrations i LEFT JOIN token_health t"
        " ON t.user_id = i.user_id AND t.integration_type = i.integration_type"
        f" WHERE 1 = 1{where} GROUP BY i.integration_type",
        args,
    ).fetchall()


def state_counts(
    conn: sqlite3.Connection, table: str, column: str, user_id: str | None
) -> list[tuple[str, str, int]]:
    """(integration_type, value, pairs) of one state column: token status or breaker state."""
    where, args = _user_filter("user_id", user_id)
    return conn.execute(
        f"SELECT integration_type, {column}, count(*) FROM {table}"
        f" WHERE 1 = 1{where} GROUP BY integration_type, {column}",
        args,
    ).fetchall()


def revoked_pairs(conn: sqlite3.Connection, user_id: str | None) -> list[tuple[str, str, str]]:
    """(user_id, integration_type, last_checked) of every revoked token."""
    where, args = _user_filter("user_id", user_id)
    return conn.execute(
        "SELECT user_id, integration_type, last_checked FROM token_health"
        f" WHERE status = 'revoked'{where}",
        args,
    ).fetchall()


def open_reconnect_notices(conn: sqlite3.Connection, user_id: str | None) -> list[tuple[str, str]]:
    """(user_id, earliest created_at) of users with an unresolved reconnect notice."""
    where, args = _user_filter("user_id", user_id)
    return conn.execute(
        "SELECT user_id, min(created_at) FROM notifications"
        f" WHERE kind = ? AND resolved_at IS NULL{where} GROUP BY user_id",
        [RECONNECT_NOTICE, *args],
    ).fetchall()


def open_breakers(conn: sqlite3.Connection, user_id: str | None) -> list[tuple]:
    """Open breakers: (user_id, integration_type, failure_count, reason, opened_at, retry_at)."""
    where, args = _user_filter("user_id", user_id)
    return conn.execute(
        "SELECT user_id, integration_type, failure_count, last_failure_reason, opened_at,"
        f" next_retry_at FROM circuit_breaker_state WHERE state = 'open'{where}"
        " ORDER BY next_retry_at, user_id, integration_type",
        args,
    ).fetchall()


def window_groups(
    conn: sqlite3.Connection, start: str, end: str, user_id: str | None
) -> list[WindowGroup]:
    """The window's attempts grouped for every figure (`start <= created_at <= end`).

    Fleet-wide with the hourly rollup: whole hours come from the rollup and only the partial
    hours at both edges from sync_metrics, so a year costs about what a day does. Otherwise (or
    for one user) one range scan of sync_metrics.
    """
    if user_id is None and has_rollup(conn):
        first_hour, last_hour = _hour_ceil(start), _hour_floor(end)
        if first_hour < last_hour:
            return [
                *_raw_groups(conn, start, first_hour, None, end_inclusive=False),
                *_rolled_groups(conn, first_hour, last_hour),
                *_raw_groups(conn, last_hour, end, None, end_inclusive=True),
            ]
    return _raw_groups(conn, start, end, user_id, end_inclusive=True)


def _raw_groups(
    conn: sqlite3.Connection, start: str, end: str, user_id: str | None, *, end_inclusive: bool
) -> list[WindowGroup]:
    where, args = _user_filter("user_id", user_id)
    column = _time_column(user_id)
    rows = conn.execute(
        "SELECT substr(created_at, 1, 10) AS day, integration_type, trigger, result,"
        " skip_reason, saved_by, error_class, count(*), sum(api_calls_made),"
        " sum(api_calls_saved), sum(full_resync), sum(items_processed)"
        f" FROM sync_metrics WHERE {column} >= ? AND {column} {'<=' if end_inclusive else '<'} ?"
        f"{where} GROUP BY day, integration_type, trigger, result, skip_reason, saved_by,"
        " error_class",
        [start, end, *args],
    ).fetchall()
    return [WindowGroup(*row) for row in rows]


def _rolled_groups(conn: sqlite3.Connection, first_hour: str, last_hour: str) -> list[WindowGroup]:
    """Whole hours from first_hour up to (not including) last_hour, from the rollup."""
    rows = conn.execute(
        "SELECT substr(hour, 1, 10) AS day, integration_type, trigger, result,"
        " nullif(skip_reason, ''), nullif(saved_by, ''), nullif(error_class, ''), sum(attempts),"
        " sum(api_calls_made), sum(api_calls_saved), sum(full_resyncs), sum(items_processed)"
        f" FROM {ROLLUP_TABLE} WHERE hour >= ? AND hour < ?"
        " GROUP BY day, integration_type, trigger, result, skip_reason, saved_by, error_class"
        " HAVING sum(attempts) > 0",
        [first_hour[:13], last_hour[:13]],
    ).fetchall()
    return [WindowGroup(*row) for row in rows]


def _hour_floor(stamp: str) -> str:
    return to_iso(from_iso(stamp).replace(minute=0, second=0, microsecond=0))


def _hour_ceil(stamp: str) -> str:
    floor = _hour_floor(stamp)
    return floor if floor == to_iso(from_iso(stamp)) else to_iso(from_iso(floor) + HOUR)


def has_rollup(conn: sqlite3.Connection) -> bool:
    """Whether the database keeps the hourly rollup of sync_metrics."""
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [ROLLUP_TABLE]
        ).fetchone()
        is not None
    )


def pair_freshness(conn: sqlite3.Connection, now: str, user_id: str | None) -> list[PairFreshness]:
    """Every enabled pair with its last success at or before now (a backward index walk)."""
    where, args = _user_filter("i.user_id", user_id)
    rows = conn.execute(
        "SELECT i.user_id, i.integration_type,"
        " (SELECT m.created_at FROM sync_metrics m"
        "  WHERE m.user_id = i.user_id AND m.integration_type = i.integration_type"
        "  AND m.created_at <= ? AND m.result = 'success'"
        "  ORDER BY m.created_at DESC LIMIT 1),"
        " s.current_frequency_seconds"
        " FROM user_integrations i LEFT JOIN sync_schedule s"
        " ON s.user_id = i.user_id AND s.integration_type = i.integration_type"
        f" WHERE 1 = 1{where}",
        [now, *args],
    ).fetchall()
    return [PairFreshness(*row) for row in rows]


def user_record(conn: sqlite3.Connection, user_id: str) -> tuple[str, str | None, str] | None:
    """(id, email, created_at) of one user."""
    return conn.execute(
        "SELECT id, email, created_at FROM users WHERE id = ?", [user_id]
    ).fetchone()


def user_pairs(conn: sqlite3.Connection, user_id: str) -> list[dict]:
    """The state of each of a user's enabled integrations, from every state table."""
    conn_rows = conn.execute(
        "SELECT i.integration_type, t.status, t.last_checked, t.error_message,"
        " b.state, b.failure_count, b.last_failure_reason, b.next_retry_at,"
        " s.default_frequency_seconds, s.current_frequency_seconds, s.consecutive_no_changes,"
        " s.last_sync_at, s.next_sync_at"
        " FROM user_integrations i"
        " LEFT JOIN token_health t"
        " ON t.user_id = i.user_id AND t.integration_type = i.integration_type"
        " LEFT JOIN circuit_breaker_state b"
        " ON b.user_id = i.user_id AND b.integration_type = i.integration_type"
        " LEFT JOIN sync_schedule s"
        " ON s.user_id = i.user_id AND s.integration_type = i.integration_type"
        " WHERE i.user_id = ? ORDER BY i.integration_type",
        [user_id],
    )
    names = [d[0] for d in conn_rows.description]
    names[1:5] = ["token_status", "token_last_checked", "token_error", "breaker_state"]
    names[5:8] = ["breaker_failure_count", "breaker_reason", "breaker_next_retry_at"]
    return [dict(zip(names, row, strict=True)) for row in conn_rows.fetchall()]


HISTORY_COLUMNS: Sequence[str] = (
    "created_at",
    "integration_type",
    "trigger",
    "sync_type",
    "result",
    "skip_reason",
    "duration_ms",
    "items_processed",
    "items_added",
    "items_updated",
    "items_deleted",
    "full_resync",
    "api_calls_made",
    "api_calls_saved",
    "saved_by",
    "error_class",
    "error_message",
)


def user_history(
    conn: sqlite3.Connection, user_id: str, start: str, end: str, *, limit: int
) -> list[dict]:
    """A user's attempts in the window, newest first, at most `limit`."""
    rows = conn.execute(
        f"SELECT {', '.join(HISTORY_COLUMNS)} FROM sync_metrics"
        f" WHERE user_id = ? AND {_time_column(user_id)} >= ? AND {_time_column(user_id)} <= ?"
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        [user_id, start, end, limit],
    ).fetchall()
    return [dict(zip(HISTORY_COLUMNS, row, strict=True)) for row in rows]
