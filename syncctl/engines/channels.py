"""Watch-channel upkeep after a calendar sync: carry out policy/channels.py's plan at Google.

An engine-like step: it reads the user's channels and mirrored calendars, asks the pure plan
what to do, and makes only the calls the plan names, each stored in its own transaction (a
crash later in the pass leaves no orphan). Errors are logged and listed, never raised: a
failed watch keeps the old channel, which still works until it expires. The orchestrator runs
it only inside an attempt that passed every gate, so the channels of a revoked user or of an
open breaker are never renewed; a removed calendar is no longer mirrored, so its channel is
stopped rather than renewed.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlite_utils

from syncctl.clock import from_iso, to_iso
from syncctl.config import Settings
from syncctl.google.errors import GoogleError, QuotaError, TransientError
from syncctl.policy import channels as channel_policy
from syncctl.policy.channels import CHANNEL_TTL_SECONDS, ChannelState
from syncctl.store import channels as channel_store
from syncctl.store import transaction
from syncctl.store.channels import ChannelRow

if TYPE_CHECKING:
    from syncctl.google.session import GoogleSession

log = logging.getLogger("syncctl.channels")

TOKEN_BYTES = 32


@dataclass
class ChannelReport:
    """What one pass over a user's channels did."""

    opened: list[str] = field(default_factory=list)  # calendar ids that got a new channel
    renewed: list[str] = field(default_factory=list)  # of those, ids that had a channel before
    stopped: list[str] = field(default_factory=list)  # channel ids stopped at Google
    forgotten: list[str] = field(default_factory=list)  # channel ids marked stopped, no call
    lapsing: list[str] = field(default_factory=list)  # superseded ids left to expire
    errors: list[str] = field(default_factory=list)
    covered: bool = False  # every mirrored calendar has a current channel
    renew_by: datetime | None = None  # sync again before this to renew just in time

    @property
    def ok(self) -> bool:
        """Whether every Google call of the pass succeeded."""
        return not self.errors


def maintain_channels(
    db: sqlite_utils.Database,
    session: GoogleSession,
    user_id: str,
    *,
    settings: Settings,
    now: datetime,
) -> ChannelReport:
    """Give each of a user's calendars a current watch channel, with the fewest Google calls."""
    report = ChannelReport()
    address = settings.webhook_url
    # Without an address every live channel is stopped, whatever calendars are mirrored.
    calendars = channel_store.calendar_ids(db.conn, user_id) if address else []
    rows = {row.channel_id: row for row in channel_store.open_channels(db.conn, user_id)}
    plan = channel_policy.plan_channels(
        [_state(row) for row in rows.values()], set(calendars), address, now, settings
    )
    if plan.forget:
        with transaction(db) as tx:
            channel_store.mark_stopped(tx, plan.forget, now=now)
        report.forgotten.extend(plan.forget)
    had_channel = {row.calendar_id for row in rows.values() if row.channel_id not in plan.forget}
    stops = list(plan.stop)
    for calendar_id in plan.open if address else ():
        if _open_channel(db, session, user_id, calendar_id, address, now, report):
            report.opened.append(calendar_id)
            if calendar_id in had_channel:
                report.renewed.append(calendar_id)
            stops.extend(plan.stop_if_replaced.get(calendar_id, ()))
    for channel_id in stops:
        _stop_channel(db, session, rows[channel_id], now, report, retry_later=True)
    report.lapsing.extend(plan.lapse)
    report.covered, report.renew_by = coverage(db.conn, user_id, address, now, settings)
    return report


def coverage(
    conn: sqlite3.Connection,
    user_id: str,
    address: str | None,
    now: datetime,
    settings: Settings,
) -> tuple[bool, datetime | None]:
    """Whether every mirrored calendar has a current channel, and when to renew the first."""
    if address is None:
        return False, None
    calendars = channel_store.calendar_ids(conn, user_id)
    if not calendars:
        return False, None
    margin = now + timedelta(seconds=settings.webhook_renew_before_seconds)
    longest: dict[str, datetime] = {}
    for row in channel_store.open_channels(conn, user_id):
        expiration = from_iso(row.expiration)
        if row.address == address and expiration > margin:
            longest[row.calendar_id] = max(expiration, longest.get(row.calendar_id, expiration))
    if not set(calendars) <= longest.keys():
        return False, None
    return True, channel_policy.renew_by([longest[c] for c in calendars], settings)


def all_calendars_covered(
    conn: sqlite3.Connection, user_id: str, now: datetime, *, until: datetime | None = None
) -> bool:
    """Whether the user has calendars and each has an unstopped channel live past `until`."""
    if not channel_store.calendar_ids(conn, user_id):
        return False
    return channel_store.uncovered_calendar_count(conn, user_id, until or now) == 0


def stop_user_channels(
    db: sqlite_utils.Database, session: GoogleSession | None, user_id: str, now: datetime
) -> ChannelReport:
    """Stop every open channel of a user (at Google when a session is given) and forget them."""
    report = ChannelReport()
    for row in channel_store.open_channels(db.conn, user_id):
        if session is None or from_iso(row.expiration) <= now:
            with transaction(db) as tx:
                channel_store.mark_stopped(tx, [row.channel_id], now=now)
            report.forgotten.append(row.channel_id)
        else:
            _stop_channel(db, session, row, now, report, retry_later=False)
    return report


def _state(row: ChannelRow) -> ChannelState:
    return ChannelState(row.channel_id, row.calendar_id, row.address, from_iso(row.expiration))


def _open_channel(
    db: sqlite_utils.Database,
    session: GoogleSession,
    user_id: str,
    calendar_id: str,
    address: str,
    now: datetime,
    report: ChannelReport,
) -> bool:
    channel_id = str(uuid.uuid4())
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        reply = session.watch_events(
            calendar_id,
            channel_id=channel_id,
            address=address,
            token=token,
            ttl_seconds=CHANNEL_TTL_SECONDS,
        )
    except GoogleError as error:
        _record_error(report, f"cannot watch calendar {calendar_id} of {user_id}: {error}")
        return False
    resource_id = reply.get("resourceId")
    if not isinstance(resource_id, str) or not resource_id:
        _record_error(report, f"watch of calendar {calendar_id} of {user_id}: no resourceId")
        return False
    row = ChannelRow(
        channel_id=channel_id,
        user_id=user_id,
        calendar_id=calendar_id,
        resource_id=resource_id,
        token=token,
        address=address,
        expiration=to_iso(_expiration(reply.get("expiration"), now)),
        created_at=to_iso(now),
    )
    with transaction(db) as tx:
        channel_store.insert_channel(tx, row)
    return True


def _expiration(value: object, now: datetime) -> datetime:
    """The channel's expiration from Google's Unix milliseconds (a string or int)."""
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError, OSError):
        return now + timedelta(seconds=CHANNEL_TTL_SECONDS)


def _stop_channel(
    db: sqlite_utils.Database,
    session: GoogleSession,
    row: ChannelRow,
    now: datetime,
    report: ChannelReport,
    *,
    retry_later: bool,
) -> None:
    try:
        session.stop_channel(row.channel_id, row.resource_id)
    except (TransientError, QuotaError) as error:
        _record_error(report, f"cannot stop channel {row.channel_id}: {error}")
        if retry_later:
            return
        report.forgotten.append(row.channel_id)
    except GoogleError as error:  # Google refuses for good: nothing more to do than forget it
        _record_error(report, f"cannot stop channel {row.channel_id}: {error}")
        report.forgotten.append(row.channel_id)
    else:
        report.stopped.append(row.channel_id)
    with transaction(db) as tx:
        channel_store.mark_stopped(tx, [row.channel_id], now=now)


def _record_error(report: ChannelReport, message: str) -> None:
    log.warning("webhook channels: %s", message)
    report.errors.append(message)
