"""Per-(user, integration) gate state: token health, circuit breaker, schedule, notices."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from syncctl.clock import from_iso, to_iso
from syncctl.model import BreakerState, Integration, TokenStatus, Trigger
from syncctl.policy import breaker as breaker_policy
from syncctl.policy.breaker import BreakerRecord
from syncctl.policy.schedule import ScheduleRecord


@dataclass(frozen=True)
class DuePair:
    """A (user, integration) whose next_sync_at has passed, and what made it due."""

    user_id: str
    integration: Integration
    next_sync_at: str
    trigger: Trigger


def _moment(text: str | None) -> datetime | None:
    return from_iso(text) if text else None


def _stamp(moment: datetime | None) -> str | None:
    return to_iso(moment) if moment else None


@dataclass(frozen=True)
class ScheduleMark:
    """A pair's `next_sync_at` and pending trigger at one moment; a change means a notification."""

    due: datetime
    pending_trigger: Trigger | None


def schedule_mark(
    conn: sqlite3.Connection, user_id: str, integration: Integration
) -> ScheduleMark | None:
    """The pair's schedule mark now (None when the pair is not scheduled)."""
    row = conn.execute(
        "SELECT next_sync_at, pending_trigger FROM sync_schedule"
        " WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    if row is None:
        return None
    return ScheduleMark(from_iso(row[0]), Trigger(row[1]) if row[1] else None)


def due_pairs(conn: sqlite3.Connection, now: datetime, limit: int | None = None) -> list[DuePair]:
    """Pairs due at `now`, most overdue first, from the next_sync_at index."""
    rows = conn.execute(
        "SELECT user_id, integration_type, next_sync_at, pending_trigger FROM sync_schedule"
        " WHERE next_sync_at <= ? ORDER BY next_sync_at, user_id, integration_type LIMIT ?",
        [to_iso(now), -1 if limit is None else limit],
    ).fetchall()
    return [
        DuePair(user_id, Integration(kind), next_at, Trigger(pending or Trigger.SCHEDULED))
        for user_id, kind, next_at, pending in rows
    ]


def load_token_status(
    conn: sqlite3.Connection, user_id: str, integration: Integration
) -> TokenStatus:
    """The stored token-health status of a pair (`unknown` when never checked)."""
    row = conn.execute(
        "SELECT status FROM token_health WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    return TokenStatus(row[0]) if row else TokenStatus.UNKNOWN


def save_token_health(
    conn: sqlite3.Connection,
    user_id: str,
    integrations: Iterable[Integration],
    status: TokenStatus,
    *,
    now: datetime,
    error_message: str | None = None,
) -> None:
    """Store a token-health verdict for some of a user's integrations."""
    conn.executemany(
        "INSERT INTO token_health (user_id, integration_type, status, last_checked, error_message)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT(user_id, integration_type) DO UPDATE SET"
        " status = excluded.status, last_checked = excluded.last_checked,"
        " error_message = excluded.error_message",
        [(user_id, i.value, status.value, to_iso(now), error_message) for i in integrations],
    )


def list_token_health(conn: sqlite3.Connection, user_id: str | None = None) -> list[dict]:
    """Token-health rows (optionally of one user), by user and integration."""
    rows = conn.execute(
        "SELECT user_id, integration_type, status, last_checked, error_message FROM token_health"
        " WHERE ? IS NULL OR user_id = ? ORDER BY user_id, integration_type",
        [user_id, user_id],
    ).fetchall()
    keys = ("user_id", "integration_type", "status", "last_checked", "error_message")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def load_breaker(conn: sqlite3.Connection, user_id: str, integration: Integration) -> BreakerRecord:
    """The stored breaker of a pair (closed when none is stored)."""
    row = conn.execute(
        "SELECT state, failure_count, last_failure_at, last_failure_reason, opened_at,"
        " next_retry_at FROM circuit_breaker_state WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    if row is None:
        return BreakerRecord()
    state, count, last_at, reason, opened_at, retry_at = row
    return BreakerRecord(
        state=BreakerState(state),
        failure_count=count,
        last_failure_at=_moment(last_at),
        last_failure_reason=reason,
        opened_at=_moment(opened_at),
        next_retry_at=_moment(retry_at),
    )


def save_breaker(
    conn: sqlite3.Connection, user_id: str, integration: Integration, record: BreakerRecord
) -> None:
    """Store a pair's breaker."""
    conn.execute(
        "INSERT OR REPLACE INTO circuit_breaker_state (user_id, integration_type, state,"
        " failure_count, last_failure_at, last_failure_reason, opened_at, next_retry_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            user_id,
            integration.value,
            record.state.value,
            record.failure_count,
            _stamp(record.last_failure_at),
            record.last_failure_reason,
            _stamp(record.opened_at),
            _stamp(record.next_retry_at),
        ],
    )


# A breaker worth an operator's look: not closed, or closed with failures counting up.
_ACTIVE_BREAKER = "(state != 'closed' OR failure_count > 0)"


def list_breakers(conn: sqlite3.Connection, *, active_only: bool = False) -> list[dict]:
    """Stored breakers by user and integration: every one, or only the active ones."""
    where = f" WHERE {_ACTIVE_BREAKER}" if active_only else ""
    rows = conn.execute(
        "SELECT user_id, integration_type, state, failure_count, last_failure_at,"
        " last_failure_reason, opened_at, next_retry_at FROM circuit_breaker_state"
        f"{where} ORDER BY user_id, integration_type"
    ).fetchall()
    keys = (
        "user_id",
        "integration_type",
        "state",
        "failure_count",
        "last_failure_at",
        "last_failure_reason",
        "opened_at",
        "next_retry_at",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


def count_quiet_breakers(conn: sqlite3.Connection) -> int:
    """How many breakers are closed with no failure counted."""
    row = conn.execute(
        f"SELECT count(*) FROM circuit_breaker_state WHERE NOT {_ACTIVE_BREAKER}"
    ).fetchone()
    return int(row[0])


def load_schedule(
    conn: sqlite3.Connection, user_id: str, integration: Integration
) -> ScheduleRecord | None:
    """The stored schedule of a pair, or None if the pair is not scheduled."""
    row = conn.execute(
        "SELECT default_frequency_seconds, current_frequency_seconds, consecutive_no_changes,"
        " last_sync_at, next_sync_at FROM sync_schedule"
        " WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    if row is None:
        return None
    default, current, no_changes, last_at, next_at = row
    return ScheduleRecord(
        default_frequency_seconds=default,
        current_frequency_seconds=current,
        consecutive_no_changes=no_changes,
        last_sync_at=_moment(last_at),
        next_sync_at=from_iso(next_at),
    )


def save_schedule(
    conn: sqlite3.Connection,
    user_id: str,
    integration: Integration,
    record: ScheduleRecord,
    *,
    keep_pending: bool = False,
) -> None:
    """Store a pair's schedule; unless kept, clear the trigger a webhook left pending."""
    conn.execute(
        "UPDATE sync_schedule SET default_frequency_seconds = ?, current_frequency_seconds = ?,"
        " consecutive_no_changes = ?, last_sync_at = ?, next_sync_at = ?,"
        " pending_trigger = CASE WHEN ? THEN pending_trigger END"
        " WHERE user_id = ? AND integration_type = ?",
        [
            record.default_frequency_seconds,
            record.current_frequency_seconds,
            record.consecutive_no_changes,
            _stamp(record.last_sync_at),
            to_iso(record.next_sync_at),
            keep_pending,
            user_id,
            integration.value,
        ],
    )


def has_open_notice(conn: sqlite3.Connection, user_id: str, kind: str) -> bool:
    """Whether the user has an unresolved notice of this kind."""
    row = conn.execute(
        "SELECT 1 FROM notifications WHERE user_id = ? AND kind = ? AND resolved_at IS NULL",
        [user_id, kind],
    ).fetchone()
    return row is not None


def add_notice(
    conn: sqlite3.Connection, user_id: str, kind: str, message: str, *, now: datetime
) -> None:
    """Record a notice for operators (e.g. that a user must reconnect)."""
    conn.execute(
        "INSERT INTO notifications (user_id, kind, message, created_at) VALUES (?, ?, ?, ?)",
        [user_id, kind, message, to_iso(now)],
    )


def reset_breaker(conn: sqlite3.Connection, user_id: str, integration: Integration) -> None:
    """Close a pair's breaker and zero its count (an operator's reset)."""
    save_breaker(conn, user_id, integration, breaker_policy.reset())
