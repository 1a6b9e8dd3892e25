"""Per-(user, integration) gate state: token health, circuit breaker, schedule, notices.

`load_pair_state` reads everything one attempt needs in one go, `save_attempt` writes what the
policy decided (`PairUpdate`) inside the caller's transaction. Every function takes the
`sqlite3.Connection` (the store's one handle type); records come from `syncctl.model`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

from syncctl.clock import from_iso, to_iso
from syncctl.config import MAX_INTERVAL_SECONDS, MAX_STORED_INTERVAL_SECONDS
from syncctl.model import (
    MASS_DELETE_NOTICE,
    RECONNECT_NOTICE,
    BreakerRecord,
    BreakerState,
    DuePair,
    Integration,
    Lease,
    Notice,
    PairState,
    PairUpdate,
    RefreshedToken,
    Result,
    ScheduleMark,
    ScheduleRecord,
    SyncType,
    TokenHealthUpdate,
    TokenStatus,
    Trigger,
)
from syncctl.store import holds, metrics
from syncctl.store import users as user_store
from syncctl.store.sync_tokens import CALENDAR_LIST_SCOPE


def _moment(text: str | None) -> datetime | None:
    """A stored time; one that does not parse (hand-edited, or an old bug) reads as None."""
    if not text:
        return None
    try:
        return from_iso(text)
    except (TypeError, ValueError, OverflowError):
        return None


# A stored value out of range must never stop a later run (SPEC 1): each is clamped on the way
# in, so the policies only ever see values that valid settings could have produced.
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)  # an unreadable next_sync_at makes the pair due
MAX_STORED_COUNT = 2**31 - 1
KNOWN_INTEGRATIONS = frozenset(i.value for i in Integration)
KNOWN_BREAKER_STATES = frozenset(s.value for s in BreakerState)
KNOWN_TOKEN_STATUSES = frozenset(s.value for s in TokenStatus)


_BREAKER_COLUMNS = (
    "b.state, b.failure_count, b.last_failure_at, b.last_failure_reason, b.opened_at,"
    " b.next_retry_at"
)


def _clamped(value: object, low: int, high: int, fallback: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return fallback
    return int(min(max(value, low), high))


def _due_time(text: str | None) -> datetime:
    return _moment(text) or LONG_AGO


def _trigger(text: str | None) -> Trigger:
    try:
        return Trigger(text) if text else Trigger.SCHEDULED
    except ValueError:
        return Trigger.SCHEDULED


def _token_status(text: str | None) -> TokenStatus:
    return TokenStatus(text) if text in KNOWN_TOKEN_STATUSES else TokenStatus.UNKNOWN


def _stamp(moment: datetime | None) -> str | None:
    return to_iso(moment) if moment else None


class SavePoint(NamedTuple):
    """What an attempt's save reads under the write lock, in one statement."""

    mark: ScheduleMark | None  # the pair's schedule mark now (None: the pair is not scheduled)
    pair_exists: bool  # its user still has the integration
    lease: Lease | None  # the pair's lease row now, expired or not
    breaker: tuple | None  # the pair's breaker row now, as stored (None: no row)


def load_save_point(conn: sqlite3.Connection, user_id: str, integration: Integration) -> SavePoint:
    """The pair's schedule mark, whether the pair still exists, its lease and its stored breaker
    row, read in the save's own transaction."""
    row = conn.execute(
        "SELECT s.next_sync_at, s.pending_trigger, s.user_id IS NOT NULL,"
        " EXISTS (SELECT 1 FROM user_integrations"
        " WHERE user_id = p.user_id AND integration_type = p.integration_type),"
        f" l.holder, l.expires_at, b.user_id IS NOT NULL, {_BREAKER_COLUMNS}"
        " FROM (SELECT ? AS user_id, ? AS integration_type) p"
        " LEFT JOIN sync_schedule s"
        " ON s.user_id = p.user_id AND s.integration_type = p.integration_type"
        " LEFT JOIN sync_leases l"
        " ON l.user_id = p.user_id AND l.integration_type = p.integration_type"
        " LEFT JOIN circuit_breaker_state b"
        " ON b.user_id = p.user_id AND b.integration_type = p.integration_type",
        [user_id, integration.value],
    ).fetchone()
    next_at, pending, scheduled, exists, holder, expires_at, has_breaker = row[:7]
    mark = ScheduleMark(_due_time(next_at), _trigger(pending) if pending else None)
    lease = None
    if holder is not None:
        lease = Lease(user_id, integration.value, holder, from_iso(expires_at))
    breaker = tuple(row[7:]) if has_breaker else None
    return SavePoint(mark if scheduled else None, bool(exists), lease, breaker)


def due_pairs(
    conn: sqlite3.Connection,
    now: datetime,
    limit: int | None = None,
    *,
    user_id: str | None = None,
    with_cost: bool = False,
) -> list[DuePair]:
    """Candidate pairs due at `now` (a range on the next_sync_at index), most overdue first, with
    the token status and breaker the gate decides on and the user's OAuth client id (run-due's
    refused-client gate); `with_cost` adds each pair's recent mean calls per successful sync
    (metrics.RECENT_CALLS_PER_SYNC)."""
    cost = metrics.recent_mean_sql("s.user_id", "s.integration_type") if with_cost else "NULL"
    cost_args = [Result.SUCCESS.value, SyncType.INCREMENTAL.value] * with_cost
    rows = conn.execute(
        "SELECT s.user_id, s.integration_type, s.next_sync_at, s.pending_trigger, t.status,"
        f" {_BREAKER_COLUMNS}, {cost}, h.user_id IS NOT NULL, c.client_id FROM sync_schedule s"
        " LEFT JOIN token_health t"
        " ON t.user_id = s.user_id AND t.integration_type = s.integration_type"
        " LEFT JOIN circuit_breaker_state b"
        " ON b.user_id = s.user_id AND b.integration_type = s.integration_type"
        " LEFT JOIN mass_delete_holds h"
        " ON h.user_id = s.user_id AND h.integration_type = s.integration_type"
        " LEFT JOIN credentials c ON c.user_id = s.user_id"
        " WHERE s.next_sync_at <= ? AND (? IS NULL OR s.user_id = ?)"
        " ORDER BY s.next_sync_at, s.user_id, s.integration_type LIMIT ?",
        [*cost_args, to_iso(now), user_id, user_id, -1 if limit is None else limit],
    ).fetchall()
    return [
        DuePair(
            user_id,
            Integration(kind),
            next_at,
            _trigger(pending),
            _token_status(status),
            _breaker(row),
            mean,
            bool(held),
            client_id,
        )
        for user_id, kind, next_at, pending, status, *row, mean, held, client_id in rows
        if kind in KNOWN_INTEGRATIONS  # a row no syncctl wrote is not synced
    ]


def load_gate_state(
    conn: sqlite3.Connection, user_id: str, integration: Integration
) -> tuple[TokenStatus, BreakerRecord, bool]:
    """What the gate decides on, in one statement: the pair's token status, breaker, and
    whether a mass-delete hold stands (an attempt's first look, before its lease)."""
    row = conn.execute(
        f"SELECT t.status, {_BREAKER_COLUMNS}, h.user_id IS NOT NULL"
        " FROM (SELECT ? AS user_id, ? AS integration_type) p"
        " LEFT JOIN token_health t"
        " ON t.user_id = p.user_id AND t.integration_type = p.integration_type"
        " LEFT JOIN circuit_breaker_state b"
        " ON b.user_id = p.user_id AND b.integration_type = p.integration_type"
        " LEFT JOIN mass_delete_holds h"
        " ON h.user_id = p.user_id AND h.integration_type = p.integration_type",
        [user_id, integration.value],
    ).fetchone()
    status, *breaker, held = row
    return _token_status(status), _breaker(breaker), bool(held)


# One statement for what load_pair_state reads of the pair's own rows (schedule, token status,
# breaker, hold, notices, integrations, the accounted stretch, recent costs, open watch
# channels): each statement is
# a GIL hand-off and, with other connections writing, a fresh page-cache read, so at 64 threads
# twelve small statements cost several times what one does. Parameters are numbered: ?1 and ?2
# are recent_mean_sql's (result, sync type).
_PAIR_STATE_SQL = (
    "SELECT s.user_id IS NOT NULL, s.default_frequency_seconds, s.current_frequency_seconds,"
    " s.consecutive_no_changes, s.last_sync_at, s.next_sync_at, s.pending_trigger,"
    f" t.status, {_BREAKER_COLUMNS}, h.user_id IS NOT NULL,"
    " (SELECT group_concat(integration_type) FROM user_integrations WHERE user_id = p.user_id),"
    " EXISTS (SELECT 1 FROM notifications WHERE user_id = p.user_id AND kind = p.reconnect"
    " AND resolved_at IS NULL),"
    " EXISTS (SELECT 1 FROM notifications WHERE user_id = p.user_id AND kind = p.held"
    " AND resolved_at IS NULL),"
    " (SELECT min(created_at) FROM sync_metrics"
    " WHERE user_id = p.user_id AND integration_type = p.integration_type),"
    " (SELECT created_at FROM sync_metrics WHERE user_id = p.user_id"
    " AND integration_type = p.integration_type AND trigger != 'manual'"
    " ORDER BY created_at DESC, id DESC LIMIT 1),"
    " (SELECT count(*) FROM calendars WHERE user_id = p.user_id),"
    # The mean of recent failures prices only a circuit_open skip, which needs a breaker that is
    # not closed: a closed one's (most attempts) is not read, since finding that a pair with no
    # failure has none walks back through its whole history.
    " CASE WHEN b.state != 'closed' THEN"
    f" {metrics.recent_mean_sql('p.user_id', 'p.integration_type')} END,"
    f" {metrics.recent_poll_calls_sql('p.user_id', 'p.integration_type')},"
    " (SELECT updated_at FROM sync_tokens WHERE user_id = p.user_id"
    " AND integration_type = p.integration_type AND scope = ?7),"
    " p.integration_type = 'calendar'"
    " AND EXISTS (SELECT 1 FROM webhook_channels WHERE user_id = p.user_id AND stopped_at IS NULL)"
    " FROM (SELECT ?3 AS user_id, ?4 AS integration_type, ?5 AS reconnect, ?6 AS held) p"
    " LEFT JOIN sync_schedule s"
    " ON s.user_id = p.user_id AND s.integration_type = p.integration_type"
    " LEFT JOIN token_health t"
    " ON t.user_id = p.user_id AND t.integration_type = p.integration_type"
    " LEFT JOIN circuit_breaker_state b"
    " ON b.user_id = p.user_id AND b.integration_type = p.integration_type"
    " LEFT JOIN mass_delete_holds h"
    " ON h.user_id = p.user_id AND h.integration_type = p.integration_type"
)


def load_pair_state(conn: sqlite3.Connection, user_id: str, integration: Integration) -> PairState:
    """Everything one attempt decides on, read once: gate state, schedule, recent costs."""
    row = conn.execute(
        _PAIR_STATE_SQL,
        [
            Result.FAILURE.value,  # recent_mean_sql: the mean of recent failed attempts
            None,
            user_id,
            integration.value,
            RECONNECT_NOTICE,
            MASS_DELETE_NOTICE,
            CALENDAR_LIST_SCOPE,
        ],
    ).fetchone()
    scheduled, *schedule_row = row[:7]
    status, *breaker_row = row[7:14]
    held, kinds, reconnect_open, held_open, first, previous, calendars = row[14:21]
    failure_mean, polls, listed, channels_open = row[21:]
    schedule, mark = _schedule_and_mark(schedule_row) if scheduled else (None, None)
    return PairState(
        user_id=user_id,
        integration=integration,
        token_status=_token_status(status),
        breaker=_breaker(breaker_row),
        schedule=schedule,
        mark=mark,
        user_integrations=user_store.integrations_of((kinds or "").split(",")),
        reconnect_notice_open=bool(reconnect_open),
        recent_calls_per_failure=None if failure_mean is None else float(failure_mean),
        recent_poll_calls=metrics.poll_calls(polls),
        first_attempt_at=_moment(first),
        previous_attempt_at=_moment(previous),
        mass_delete_held=bool(held),
        mass_delete_notice_open=bool(held_open),
        mirrored_calendars=calendars if integration is Integration.CALENDAR else None,
        calendar_list_listed_at=_moment(listed) if integration is Integration.CALENDAR else None,
        open_channels=bool(channels_open),
    )


def save_attempt(
    conn: sqlite3.Connection,
    update: PairUpdate,
    *,
    pair_exists: bool,
    stored_breaker: tuple | None = None,
) -> None:
    """Write one attempt's decisions (inside the caller's transaction): the metrics row always;
    the pair's state only while the pair still exists (`load_save_point`'s answer, read in the
    same transaction: a `user remove` that ran meanwhile is not undone). A breaker identical
    to `stored_breaker` (the row as read in this transaction) is not written again."""
    record = update.attempt
    user_id, integration = record.user_id, record.integration_type
    metrics.insert_attempt(conn, record)
    if not pair_exists:
        return
    now = from_iso(record.created_at)
    if update.refreshed is not None:
        save_refreshed_token(conn, user_id, update.refreshed)
    save_token_verdict(conn, user_id, update.token_health, update.notice, now=now)
    if update.breaker is not None and not _same_row(
        user_store.breaker_values(update.breaker), stored_breaker
    ):
        save_breaker(conn, user_id, integration, update.breaker)
    if update.schedule is not None:
        save_schedule(conn, user_id, integration, update.schedule, keep_pending=update.keep_pending)
    if update.hold is not None:
        hold = update.hold
        holds.save_hold(
            conn,
            user_id,
            integration,
            mirror=hold.mirror,
            mirrored=hold.mirrored,
            deleting=hold.deleting,
            now=now,
        )
    if update.hold_cleared:
        holds.clear_hold(conn, user_id, integration)
        if not holds.list_holds(conn, user_id):  # the user's notice goes with its last hold
            resolve_notices(conn, user_id, MASS_DELETE_NOTICE, now=now)


def save_refreshed_token(conn: sqlite3.Connection, user_id: str, token: RefreshedToken) -> None:
    """Remember the access token a refresh obtained (and a refresh token Google rotated)."""
    user_store.save_access_token(
        conn,
        user_id,
        token.access_token,
        token.token_expiry,
        rotated_refresh_token=token.rotated_refresh_token,
    )


def save_token_verdict(
    conn: sqlite3.Connection,
    user_id: str,
    health: TokenHealthUpdate | None,
    notice: Notice | None,
    *,
    now: datetime,
) -> None:
    """Store a token-health verdict and the notice it leaves (either may be None)."""
    if health is not None:
        save_token_health(
            conn,
            user_id,
            health.integrations,
            health.status,
            now=now,
            error_message=health.error_message,
        )
    if notice is not None:
        add_notice(conn, user_id, notice.kind, notice.message, now=now)


def load_token_status(
    conn: sqlite3.Connection, user_id: str, integration: Integration
) -> TokenStatus:
    """The stored token-health status of a pair (`unknown` when never checked)."""
    row = conn.execute(
        "SELECT status FROM token_health WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    return _token_status(row[0]) if row else TokenStatus.UNKNOWN


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
    checked = to_iso(now)
    for integration in integrations:
        # Most verdicts repeat the stored status: updating only the other columns leaves the
        # status index alone (a page fewer written per attempt).
        kept = conn.execute(
            "UPDATE token_health SET last_checked = ?, error_message = ?"
            " WHERE user_id = ? AND integration_type = ? AND status = ?",
            [checked, error_message, user_id, integration.value, status.value],
        )
        if kept.rowcount == 0:
            conn.execute(
                "INSERT INTO token_health"
                " (user_id, integration_type, status, last_checked, error_message)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(user_id, integration_type) DO UPDATE SET"
                " status = excluded.status, last_checked = excluded.last_checked,"
                " error_message = excluded.error_message",
                [user_id, integration.value, status.value, checked, error_message],
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


def _breaker(row) -> BreakerRecord:
    state, count, last_at, reason, opened_at, retry_at = row
    if state is None:
        return BreakerRecord()
    return BreakerRecord(
        state=BreakerState(state) if state in KNOWN_BREAKER_STATES else BreakerState.CLOSED,
        failure_count=_clamped(count, 0, MAX_STORED_COUNT, 0),
        last_failure_at=_moment(last_at),
        last_failure_reason=reason,
        opened_at=_moment(opened_at),
        next_retry_at=_moment(retry_at),
    )


def load_breaker(conn: sqlite3.Connection, user_id: str, integration: Integration) -> BreakerRecord:
    """The stored breaker of a pair (closed when none is stored)."""
    row = conn.execute(
        f"SELECT {_BREAKER_COLUMNS} FROM circuit_breaker_state b"
        " WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    return BreakerRecord() if row is None else _breaker(row)


def save_breaker(
    conn: sqlite3.Connection, user_id: str, integration: Integration, record: BreakerRecord
) -> None:
    """Store a pair's breaker."""
    conn.execute(
        "INSERT OR REPLACE INTO circuit_breaker_state (user_id, integration_type, state,"
        " failure_count, last_failure_at, last_failure_reason, opened_at, next_retry_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [user_id, integration.value, *user_store.breaker_values(record)],
    )


def _same_row(values: tuple, stored: tuple | None) -> bool:
    """Whether a row to write equals the stored one, value for value and type for type (a
    stored 2.0 or a hand-edited text is written again as before)."""
    if stored is None or len(values) != len(stored):
        return False
    return all(type(a) is type(b) and a == b for a, b in zip(values, stored, strict=True))


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
    return _load_schedule_and_mark(conn, user_id, integration)[0]


def _load_schedule_and_mark(
    conn: sqlite3.Connection, user_id: str, integration: Integration
) -> tuple[ScheduleRecord | None, ScheduleMark | None]:
    row = conn.execute(
        "SELECT default_frequency_seconds, current_frequency_seconds, consecutive_no_changes,"
        " last_sync_at, next_sync_at, pending_trigger FROM sync_schedule"
        " WHERE user_id = ? AND integration_type = ?",
        [user_id, integration.value],
    ).fetchone()
    return (None, None) if row is None else _schedule_and_mark(row)


def _schedule_and_mark(row) -> tuple[ScheduleRecord, ScheduleMark]:
    default, current, no_changes, last_at, next_at, pending = row
    default = _clamped(default, 1, MAX_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS)
    record = ScheduleRecord(
        default_frequency_seconds=default,
        current_frequency_seconds=_clamped(current, 1, MAX_STORED_INTERVAL_SECONDS, default),
        consecutive_no_changes=_clamped(no_changes, 0, MAX_STORED_COUNT, 0),
        last_sync_at=_moment(last_at),
        next_sync_at=_due_time(next_at),
    )
    return record, ScheduleMark(record.next_sync_at, _trigger(pending) if pending else None)


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


def resolve_notices(conn: sqlite3.Connection, user_id: str, kind: str, *, now: datetime) -> None:
    """Mark the user's open notices of this kind resolved."""
    conn.execute(
        "UPDATE notifications SET resolved_at = ? WHERE user_id = ? AND kind = ?"
        " AND resolved_at IS NULL",
        [to_iso(now), user_id, kind],
    )


def add_notice(
    conn: sqlite3.Connection, user_id: str, kind: str, message: str, *, now: datetime
) -> None:
    """Record a notice for operators (e.g. that a user must reconnect)."""
    conn.execute(
        "INSERT INTO notifications (user_id, kind, message, created_at) VALUES (?, ?, ?, ?)",
        [user_id, kind, message, to_iso(now)],
    )


def save_schedule_due(
    conn: sqlite3.Connection,
    user_id: str,
    integration: Integration,
    record: ScheduleRecord,
    trigger: Trigger,
) -> None:
    """Store a schedule made due by an event (a webhook notification) with its pending trigger."""
    conn.execute(
        "UPDATE sync_schedule SET next_sync_at = ?, pending_trigger = ?"
        " WHERE user_id = ? AND integration_type = ?",
        [to_iso(record.next_sync_at), trigger.value, user_id, integration.value],
    )


def active_breaker_pairs(conn: sqlite3.Connection) -> list[tuple[str, Integration]]:
    """The pairs whose breaker is open, half-open or counting failures."""
    rows = conn.execute(
        f"SELECT user_id, integration_type FROM circuit_breaker_state WHERE {_ACTIVE_BREAKER}"
        " ORDER BY user_id, integration_type"
    ).fetchall()
    return [(user_id, Integration(kind)) for user_id, kind in rows if kind in KNOWN_INTEGRATIONS]
