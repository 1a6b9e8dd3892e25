"""The `sync_metrics` table: one row per orchestrated attempt."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from syncctl.clock import from_iso
from syncctl.model import AttemptRecord, ErrorClass, Integration, Result, SyncType, Trigger

# How many of a pair's latest attempts its recent mean cost is taken over.
RECENT_ATTEMPTS = 10
# How many of a pair's latest polls its typical poll is taken from (policy.savings).
RECENT_POLLS = 10


COLUMNS = tuple(AttemptRecord.__dataclass_fields__)
_INSERT_SQL = (
    f"INSERT INTO sync_metrics ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
# The booleans, stored as 0 or 1.
_FLAG_INDEXES = tuple(
    COLUMNS.index(name) for name in ("full_resync", "breaker_trial", "calendar_list_skipped")
)


def insert_attempt(conn: sqlite3.Connection, record: AttemptRecord) -> int:
    """Write one attempt row (inside the caller's transaction); returns its id."""
    # getattr, not dataclasses.asdict: asdict deep-copies every field (a hot path at 600/s).
    values = [getattr(record, name) for name in COLUMNS]
    for index in _FLAG_INDEXES:
        values[index] = int(values[index])
    cursor = conn.execute(_INSERT_SQL, values)
    return int(cursor.lastrowid or 0)


def recent_mean_sql(user_column: str, integration_column: str) -> str:
    """The one definition of a pair's recent mean cost, as a scalar subquery: the mean
    api_calls_made over its RECENT_ATTEMPTS latest attempts with a result (and a sync type, when
    given), half-open trials left out (they are single probes, not what an attempt costs).
    Parameters: result, sync type (or NULL)."""
    return (
        "(SELECT avg(api_calls_made) FROM (SELECT m.api_calls_made FROM sync_metrics m"
        f" WHERE m.user_id = {user_column} AND m.integration_type = {integration_column}"
        " AND m.result = ?1 AND m.breaker_trial = 0 AND (?2 IS NULL OR m.sync_type = ?2)"
        f" ORDER BY m.created_at DESC, m.id DESC LIMIT {RECENT_ATTEMPTS}))"
    )


_AVERAGE_CALLS = "SELECT " + recent_mean_sql("?3", "?4")


def average_calls(
    conn: sqlite3.Connection,
    user_id: str,
    integration: Integration,
    result: Result,
    sync_type: SyncType | None = None,
) -> float | None:
    """A pair's recent mean api_calls_made with this result (see recent_mean_sql)."""
    row = conn.execute(
        _AVERAGE_CALLS, [result.value, sync_type, user_id, integration.value]
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def recent_poll_calls_sql(user_column: str, integration_column: str) -> str:
    """The one definition of a pair's recent polls, as a scalar subquery: `calls:skipped` of
    its latest scheduled successful incremental syncs (before the first of those: its full
    ones, the same requests), newest first and comma-separated, NULL when there is none;
    calls are api_calls_made less channel upkeep and token refreshes, skipped is
    calendar_list_skipped, and single probes (half-open trials) are left out. Read it with
    `poll_calls`."""

    def polls(sync_type: SyncType) -> str:
        return (
            "(SELECT group_concat(calls || ':' || skipped) FROM (SELECT"
            " m.api_calls_made - m.overhead_calls AS calls, m.calendar_list_skipped AS skipped"
            f" FROM sync_metrics m WHERE m.user_id = {user_column}"
            f" AND m.integration_type = {integration_column}"
            f" AND m.result = '{Result.SUCCESS.value}' AND m.breaker_trial = 0"
            f" AND m.sync_type = '{sync_type.value}' AND m.trigger = '{Trigger.SCHEDULED.value}'"
            f" ORDER BY m.created_at DESC, m.id DESC LIMIT {RECENT_POLLS}))"
        )

    return f"coalesce({polls(SyncType.INCREMENTAL)}, {polls(SyncType.FULL)})"


def poll_calls(text: str | None) -> tuple[tuple[int, bool], ...]:
    """The (calls, calendar list skipped) pairs of a `recent_poll_calls_sql` value."""
    if not text:
        return ()
    pairs = (item.partition(":") for item in text.split(","))
    return tuple((int(calls), skipped == "1") for calls, _, skipped in pairs)


def last_success_at(
    conn: sqlite3.Connection, user_id: str, integration: Integration, trigger: Trigger
) -> datetime | None:
    """When the pair's latest successful attempt with this trigger ran (None: never)."""
    row = conn.execute(
        "SELECT max(created_at) FROM sync_metrics WHERE user_id = ? AND integration_type = ?"
        " AND trigger = ? AND result = 'success'",
        [user_id, integration.value, trigger.value],
    ).fetchone()
    return from_iso(row[0]) if row and row[0] else None


def accounted_stretch(
    conn: sqlite3.Connection, user_id: str, integration: Integration
) -> tuple[str | None, str | None]:
    """The pair's first attempt and its latest scheduled or webhook-triggered attempt (ISO
    strings, None when there is none): where the pair's accounted timeline starts and ends."""
    first = conn.execute(
        "SELECT min(created_at) FROM sync_metrics WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    latest = conn.execute(
        "SELECT created_at FROM sync_metrics WHERE user_id = ? AND integration_type = ?"
        " AND trigger != 'manual' ORDER BY created_at DESC, id DESC LIMIT 1",
        [user_id, integration.value],
    ).fetchone()
    return (first[0] if first else None, latest[0] if latest else None)


def count_attempts(conn: sqlite3.Connection, *, error_class: ErrorClass) -> int:
    """How many attempts ended with this error class."""
    row = conn.execute(
        "SELECT count(*) FROM sync_metrics WHERE error_class = ?", [error_class.value]
    ).fetchone()
    return int(row[0])
