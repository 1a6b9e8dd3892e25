"""Google Calendar into `calendars` and `calendar_events`: the list, then each calendar's events.

Which calendars: every entry of the user's calendar list that is not deleted or hidden and
that the user can read in full (accessRole owner, writer or reader). `freeBusyReader`
calendars are skipped: events.list gives only busy blocks for them. `minAccessRole` cannot be
sent with a sync token, so the filter is applied here, on both full and incremental syncs; an
entry that stops qualifying (hidden, deleted, downgraded) is removed with its events and its
events sync token. The list has its own token (scope `calendar_list`).

Which events (events.list parameters, identical for the full and the incremental sync, since
Google forbids timeMin/timeMax/updatedMin/q/orderBy/iCalUID with a syncToken and wants every
other parameter unchanged): `EVENT_PARAMS` = `maxResults=2500` (the maximum page) and
defaults otherwise: no time window (the whole calendar is mirrored), `singleEvents=false`
(recurring events are stored once, as the series plus its modified instances, not expanded
without bound), `showDeleted` unset (a full sync lists live events; an incremental one always
returns deletions, as `status: cancelled`, which are removed). Each calendar has its own token
(scope `events:<calendar_id>`); a 410 on one calendar re-syncs that calendar alone, and a 404
(the calendar vanished between the list and its events) removes it like a deleted entry.

A notified sync (`only=` the calendars a push named) skips the calendar list and lists only
those calendars' events, of the ones still mirrored: a push says one calendar's events
changed, nothing about the list. The list is refreshed by scheduled (safety) syncs.
A sync with `list_calendars=False` (a scheduled sync within the calendar list's own cadence,
policy.calendar_list) skips the list too and lists the events of every mirrored calendar.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

import sqlite_utils

from syncctl.clock import Clock
from syncctl.engines import SyncOutcome
from syncctl.engines._scope import (
    GuardedMirror,
    PageChanges,
    Scope,
    ScopeResult,
    combine,
    sync_scope,
)
from syncctl.engines.guard import DeletionGuard
from syncctl.google import GoogleSession, UnexpectedResponse
from syncctl.model import Integration, SyncType
from syncctl.policy.mass_delete import Deletions
from syncctl.store import calendar as store
from syncctl.store.calendar import CalendarRow, EventRow
from syncctl.store.db import transaction
from syncctl.store.mirror import ChangeCounts
from syncctl.store.sync_tokens import CALENDAR_LIST_SCOPE, PendingToken, events_scope

SYNCED_ACCESS_ROLES = frozenset({"owner", "writer", "reader"})
EVENT_PARAMS: dict[str, Any] = {"maxResults": 2500}


def sync_calendar(
    db: sqlite_utils.Database,
    session: GoogleSession,
    user_id: str,
    *,
    full: bool = False,
    now: Clock,
    guard: DeletionGuard | None = None,
    only: Collection[str] | None = None,
    list_calendars: bool = True,
    pending: list[PendingToken] | None = None,
) -> SyncOutcome:
    """Sync a user's calendar list, then the events of every synced calendar (or of `only`).

    Without `list_calendars` (or with `only`), the list is not requested: only the mirrored
    calendars' events are. With a `guard`, each calendar's event deletions wait for it
    (MassDeleteHeld if held). `pending`: where new tokens that cover no data go, for the caller
    to store with its record.
    """
    calls_before = session.calls_made
    if only is not None or not list_calendars:
        mirrored = [
            (calendar_id, token)
            for calendar_id, token in store.calendars_with_tokens(db.conn, user_id)
            if only is None or calendar_id in only
        ]
        results = _sync_calendars_events(
            db, session, user_id, mirrored, full=full, now=now, guard=guard, pending=pending
        )
        return combine(results, calls=session.calls_made - calls_before)
    listing = None
    if guard is not None:
        listing = GuardedMirror(
            "calendars",
            store.CALENDARS,
            (user_id,),
            guard,
            weigh=lambda conn, keys, older_than: _calendar_deletions(
                conn, user_id, keys, older_than
            ),
            remove=lambda conn, keys: store.forget_calendars(conn, user_id, keys),
        )
    calendars = Scope(
        integration=Integration.CALENDAR,
        name=CALENDAR_LIST_SCOPE,
        fetch=lambda token: session.list_calendars(sync_token=token),
        prepare=_calendar_changes,
        generation=lambda conn, new: store.calendars_generation(conn, user_id, new=new),
        save=lambda conn, changes, generation: store.save_calendars(
            conn, user_id, changes.rows, generation=generation, removed=changes.removed
        ),
        sweep=lambda conn, generation: store.sweep_calendars(conn, user_id, generation),
        guarded=listing,
    )
    results = [sync_scope(db, user_id, calendars, full=full, now=now, pending=pending)]
    calendars_now = store.calendars_with_tokens(db.conn, user_id)  # as the list left them
    results += _sync_calendars_events(
        db, session, user_id, calendars_now, full=full, now=now, guard=guard, pending=pending
    )
    return combine(results, calls=session.calls_made - calls_before)


def _sync_calendars_events(
    db: sqlite_utils.Database,
    session: GoogleSession,
    user_id: str,
    calendars: Sequence[tuple[str, str | None]],
    *,
    full: bool,
    now: Clock,
    guard: DeletionGuard | None,
    pending: list[PendingToken] | None,
) -> list[ScopeResult]:
    """Each calendar's events, from the stored token listed with it (`calendars`)."""
    results = []
    for calendar_id, stored in calendars:
        try:
            results.append(
                _sync_events(
                    db,
                    session,
                    user_id,
                    calendar_id,
                    stored,
                    full=full,
                    now=now,
                    guard=guard,
                    pending=pending,
                )
            )
        except UnexpectedResponse as exc:
            if exc.status != 404:
                raise
            # The calendar went away between the list and its events: Google no longer has it.
            with transaction(db) as conn:
                deleted = store.forget_calendar(conn, user_id, calendar_id)
            results.append(ScopeResult(SyncType.INCREMENTAL, 0, ChangeCounts(deleted=deleted)))
    return results


def _sync_events(
    db: sqlite_utils.Database,
    session: GoogleSession,
    user_id: str,
    calendar_id: str,
    stored: str | None,
    *,
    full: bool,
    now: Clock,
    guard: DeletionGuard | None = None,
    pending: list[PendingToken] | None = None,
) -> ScopeResult:
    guarded = None
    if guard is not None:
        key = (user_id, calendar_id)
        guarded = GuardedMirror(f"events of calendar {calendar_id}", store.EVENTS, key, guard)
    events = Scope(
        integration=Integration.CALENDAR,
        name=events_scope(calendar_id),
        fetch=lambda token: session.list_events(
            calendar_id, sync_token=token, params=dict(EVENT_PARAMS)
        ),
        generation=lambda conn, new: store.events_generation(conn, user_id, calendar_id, new=new),
        prepare=_event_changes,
        save=lambda conn, changes, generation: store.save_events(
            conn, user_id, calendar_id, changes.rows, generation=generation, removed=changes.removed
        ),
        sweep=lambda conn, generation: store.sweep_events(conn, user_id, calendar_id, generation),
        guarded=guarded,
        stored_token=lambda: stored,
    )
    return sync_scope(db, user_id, events, full=full, now=now, pending=pending)


def _calendar_deletions(
    conn: sqlite3.Connection, user_id: str, keys: list[str], older_than: int | None
) -> list[Deletions]:
    """A calendar that leaves the list takes all its events: each is one mirror emptied."""
    gone = set(keys)
    if older_than is not None:
        gone.update(store.swept_calendar_ids(conn, user_id, older_than))
    found = []
    for calendar_id in sorted(gone):
        events = store.count_events(conn, user_id, calendar_id)
        if events:
            found.append(Deletions(f"events of calendar {calendar_id}", events, events))
    return found


def _calendar_changes(entries: Sequence[dict[str, Any]]) -> PageChanges:
    changes = PageChanges()
    for entry in entries:
        if is_synced_calendar(entry):
            changes.rows.append(calendar_row(entry))
        else:
            changes.removed.append(entry["id"])
    return changes


def _event_changes(items: Sequence[dict[str, Any]]) -> PageChanges:
    changes = PageChanges()
    for event in items:
        if event.get("status") == "cancelled":
            changes.removed.append(event["id"])
        else:
            changes.rows.append(event_row(event))
    return changes


def is_synced_calendar(entry: dict[str, Any]) -> bool:
    """Whether a calendar-list entry is mirrored (see the module docstring)."""
    if entry.get("deleted") or entry.get("hidden"):
        return False
    return entry.get("accessRole", "owner") in SYNCED_ACCESS_ROLES


def calendar_row(entry: dict[str, Any]) -> CalendarRow:
    """The `calendars` row of a CalendarListEntry."""
    return CalendarRow(
        calendar_id=entry["id"],
        etag=entry.get("etag"),
        summary=entry.get("summaryOverride") or entry.get("summary"),
        time_zone=entry.get("timeZone"),
        access_role=entry.get("accessRole"),
        is_primary=int(bool(entry.get("primary"))),
    )


def event_row(event: dict[str, Any]) -> EventRow:
    """The `calendar_events` row of an Event."""
    return EventRow(
        event_id=event["id"],
        etag=event.get("etag"),
        status=event.get("status"),
        summary=event.get("summary"),
        start=_when(event.get("start")),
        end=_when(event.get("end")),
        updated=event.get("updated"),
        recurring_event_id=event.get("recurringEventId"),
        ical_uid=event.get("iCalUID"),
    )


def _when(moment: dict[str, Any] | None) -> str | None:
    if not moment:
        return None
    return moment.get("dateTime") or moment.get("date")
