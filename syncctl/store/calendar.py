"""The `calendars` and `calendar_events` tables: pages, sweeps, and removal of whole calendars."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from syncctl.model import Integration
from syncctl.store import mirror
from syncctl.store.mirror import ChangeCounts, MirrorTable
from syncctl.store.sync_tokens import EVENTS_SCOPE_PREFIX, delete_sync_token, events_scope


class CalendarRow(NamedTuple):
    """One `calendars` row."""

    calendar_id: str
    etag: str | None
    summary: str | None
    time_zone: str | None
    access_role: str | None
    is_primary: int


class EventRow(NamedTuple):
    """One `calendar_events` row (`start`/`end`: a dateTime, or a date for all-day events)."""

    event_id: str
    etag: str | None
    status: str | None
    summary: str | None
    start: str | None
    end: str | None
    updated: str | None
    recurring_event_id: str | None
    ical_uid: str | None


CALENDARS = MirrorTable("calendars", ("user_id",), "calendar_id", CalendarRow._fields[1:])
EVENTS = MirrorTable(
    "calendar_events", ("user_id", "calendar_id"), "event_id", EventRow._fields[1:]
)


def calendars_generation(conn: sqlite3.Connection, user_id: str, *, new: bool) -> int:
    """The generation to write calendars with: a fresh one for a full sync, else the current."""
    if new:
        return mirror.next_generation(conn, CALENDARS, [user_id])
    return mirror.current_generation(conn, CALENDARS, [user_id])


def save_calendars(
    conn: sqlite3.Connection,
    user_id: str,
    rows: Sequence[CalendarRow],
    *,
    generation: int,
    removed: Iterable[str] = (),
) -> ChangeCounts:
    """Upsert a page of calendars; removed calendars go with their events and sync token."""
    removed = [calendar_id for calendar_id in removed if calendar_id not in {r[0] for r in rows}]
    events_deleted = _forget_events(conn, user_id, removed)
    counts = mirror.apply_changes(
        conn, CALENDARS, [user_id], rows, generation=generation, removals=removed
    )
    return counts + ChangeCounts(deleted=events_deleted)


def sweep_calendars(conn: sqlite3.Connection, user_id: str, generation: int) -> int:
    """Delete calendars (with events and tokens) that a full sync of `generation` did not see."""
    gone = mirror.swept_keys(conn, CALENDARS, [user_id], generation)
    events_deleted = _forget_events(conn, user_id, gone)
    return events_deleted + mirror.delete_keys(conn, CALENDARS, [user_id], gone)


def forget_calendars(conn: sqlite3.Connection, user_id: str, calendar_ids: Sequence[str]) -> int:
    """Delete calendars with their events and sync tokens; returns the rows deleted."""
    events_deleted = _forget_events(conn, user_id, calendar_ids)
    return events_deleted + mirror.delete_keys(conn, CALENDARS, [user_id], calendar_ids)


def swept_calendar_ids(conn: sqlite3.Connection, user_id: str, generation: int) -> list[str]:
    """The calendars a full listing of `generation` did not see."""
    return mirror.swept_keys(conn, CALENDARS, [user_id], generation)


def count_events(conn: sqlite3.Connection, user_id: str, calendar_id: str) -> int:
    """How many events of a calendar are mirrored."""
    return mirror.count_rows(conn, EVENTS, [user_id, calendar_id])


def forget_calendar(conn: sqlite3.Connection, user_id: str, calendar_id: str) -> int:
    """Delete one calendar with its events and sync token; returns the rows deleted."""
    events_deleted = _forget_events(conn, user_id, [calendar_id])
    return events_deleted + mirror.delete_keys(conn, CALENDARS, [user_id], [calendar_id])


def calendars_with_tokens(conn: sqlite3.Connection, user_id: str) -> list[tuple[str, str | None]]:
    """The ids of a user's synced calendars, primary first, each with its events' stored sync
    token (None: their next sync is a full one), in one statement."""
    rows = conn.execute(
        "SELECT c.calendar_id, t.token FROM calendars c LEFT JOIN sync_tokens t"
        " ON t.user_id = c.user_id AND t.integration_type = ? AND t.scope = ? || c.calendar_id"
        " WHERE c.user_id = ? ORDER BY c.is_primary DESC, c.calendar_id",
        [Integration.CALENDAR.value, EVENTS_SCOPE_PREFIX, user_id],
    )
    return [(calendar_id, token) for calendar_id, token in rows]


def events_generation(
    conn: sqlite3.Connection, user_id: str, calendar_id: str, *, new: bool
) -> int:
    """The generation to write a calendar's events with (fresh for a full sync)."""
    if new:
        return mirror.next_generation(conn, EVENTS, [user_id, calendar_id])
    return mirror.current_generation(conn, EVENTS, [user_id, calendar_id])


def save_events(
    conn: sqlite3.Connection,
    user_id: str,
    calendar_id: str,
    rows: Sequence[EventRow],
    *,
    generation: int,
    removed: Iterable[str] = (),
) -> ChangeCounts:
    """Upsert a page of one calendar's events and delete the cancelled ones."""
    return mirror.apply_changes(
        conn, EVENTS, [user_id, calendar_id], rows, generation=generation, removals=removed
    )


def sweep_events(conn: sqlite3.Connection, user_id: str, calendar_id: str, generation: int) -> int:
    """Delete a calendar's events that a full sync of `generation` did not see."""
    return mirror.sweep(conn, EVENTS, [user_id, calendar_id], generation)


def load_calendars(conn: sqlite3.Connection, user_id: str) -> dict[str, CalendarRow]:
    """A user's stored calendars by calendar id."""
    rows = mirror.load_rows(conn, CALENDARS, [user_id])
    return {key: CalendarRow(*row) for key, row in rows.items()}


def load_events(conn: sqlite3.Connection, user_id: str, calendar_id: str) -> dict[str, EventRow]:
    """A calendar's stored events by event id."""
    rows = mirror.load_rows(conn, EVENTS, [user_id, calendar_id])
    return {key: EventRow(*row) for key, row in rows.items()}


def _forget_events(conn: sqlite3.Connection, user_id: str, calendar_ids: Sequence[str]) -> int:
    if not calendar_ids:
        return 0
    for calendar_id in calendar_ids:
        delete_sync_token(conn, user_id, Integration.CALENDAR, events_scope(calendar_id))
    cursor = conn.execute(
        "DELETE FROM calendar_events WHERE user_id = ?"
        " AND calendar_id IN (SELECT value FROM json_each(?))",
        [user_id, json.dumps(list(calendar_ids))],
    )
    return cursor.rowcount
