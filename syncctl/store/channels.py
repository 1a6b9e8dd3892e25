"""The `webhook_channels` table: calendar watch channels, and the schedule nudge a push makes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from syncctl.clock import to_iso


class ChannelRow(NamedTuple):
    """One `webhook_channels` row (timestamps as stored: UTC ISO-8601 text)."""

    channel_id: str
    user_id: str
    calendar_id: str
    resource_id: str
    token: str
    address: str
    expiration: str
    created_at: str
    stopped_at: str | None = None


_COLUMNS = ", ".join(ChannelRow._fields)


def insert_channel(conn: sqlite3.Connection, row: ChannelRow) -> None:
    """Store a channel Google has just opened."""
    conn.execute(
        f"INSERT INTO webhook_channels ({_COLUMNS}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608
        list(row),
    )


def load_channel(conn: sqlite3.Connection, channel_id: str) -> ChannelRow | None:
    """One channel by id (stopped or not), or None if it was never stored."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_channels WHERE channel_id = ?",  # noqa: S608
        [channel_id],
    ).fetchone()
    return ChannelRow(*row) if row else None


def open_channels(conn: sqlite3.Connection, user_id: str) -> list[ChannelRow]:
    """A user's channels not yet stopped (expired ones included), by calendar and expiration."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_channels"  # noqa: S608
        " WHERE user_id = ? AND stopped_at IS NULL ORDER BY calendar_id, expiration, channel_id",
        [user_id],
    ).fetchall()
    return [ChannelRow(*row) for row in rows]


def mark_stopped(conn: sqlite3.Connection, channel_ids: Iterable[str], *, now: datetime) -> None:
    """Record that channels are stopped (a stopped channel's notifications are refused)."""
    conn.executemany(
        "UPDATE webhook_channels SET stopped_at = ? WHERE channel_id = ? AND stopped_at IS NULL",
        [(to_iso(now), channel_id) for channel_id in channel_ids],
    )


def calendar_ids(conn: sqlite3.Connection, user_id: str) -> list[str]:
    """The ids of a user's mirrored calendars."""
    rows = conn.execute(
        "SELECT calendar_id FROM calendars WHERE user_id = ? ORDER BY calendar_id", [user_id]
    ).fetchall()
    return [calendar_id for (calendar_id,) in rows]


def uncovered_calendar_count(conn: sqlite3.Connection, user_id: str, until: datetime) -> int:
    """How many of a user's calendars lack an unstopped channel that lasts past `until`."""
    row = conn.execute(
        "SELECT count(*) FROM calendars AS c WHERE c.user_id = ? AND NOT EXISTS ("
        " SELECT 1 FROM webhook_channels AS w WHERE w.user_id = c.user_id"
        " AND w.calendar_id = c.calendar_id AND w.stopped_at IS NULL AND w.expiration > ?)",
        [user_id, to_iso(until)],
    ).fetchone()
    return int(row[0])
