"""The calendar engine against the fake Google over HTTP: list, events, removals, fallbacks."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import session_for

from syncctl.clock import utcnow
from syncctl.engines import SyncOutcome
from syncctl.engines.calendar import calendar_row, event_row, is_synced_calendar, sync_calendar
from syncctl.fakegoogle import FakeGoogle
from syncctl.model import Integration, SyncType
from syncctl.store.calendar import load_calendars, load_events
from syncctl.store.db import transaction
from syncctl.store.sync_tokens import (
    PendingToken,
    events_scope,
    load_sync_token,
    save_pending_tokens,
    save_sync_token,
)

USER = "carol"


@pytest.fixture
def account(fake_google):
    """A user with 3 calendars of 20 events each at the fake; returns its credentials."""
    return fake_google.add_user(USER, calendars=3, events_per_calendar=20)


def sync(fake: FakeGoogle, db, info: dict[str, Any], *, full: bool = False) -> SyncOutcome:
    with session_for(fake, info) as session:
        return sync_calendar(db, session, USER, full=full, now=utcnow)


def calendar_ids(fake: FakeGoogle) -> list[str]:
    return sorted(fake.calendars(USER))


def assert_mirror_is_exact(fake: FakeGoogle, db) -> None:
    """The database holds exactly the fake's calendars and events, field for field."""
    truth = {cid: calendar_row(entry) for cid, entry in fake.calendars(USER).items()}
    assert load_calendars(db.conn, USER) == truth
    for calendar_id in truth:
        events = {eid: event_row(e) for eid, e in fake.events(USER, calendar_id).items()}
        assert load_events(db.conn, USER, calendar_id) == events
    stored = {c for (c,) in db.conn.execute("SELECT DISTINCT calendar_id FROM calendar_events")}
    assert stored <= set(truth)
    scopes = {s for (s,) in db.conn.execute("SELECT scope FROM sync_tokens")}
    assert scopes <= {"calendar_list"} | {events_scope(c) for c in truth}


def test_first_sync_is_full_and_mirrors_a_3_calendar_account(fake_google, db):
    info = fake_google.add_user(USER, calendars=3, events_per_calendar=900)

    outcome = sync(fake_google, db, info)

    assert outcome.sync_type is SyncType.FULL
    assert (outcome.added, outcome.updated, outcome.deleted) == (3 + 2700, 0, 0)
    assert outcome.items_processed == 3 + 2700
    # one token refresh, the calendar list, one page of events per calendar
    assert outcome.api_calls_made == 5
    assert_mirror_is_exact(fake_google, db)
    assert load_sync_token(db.conn, USER, Integration.CALENDAR, "calendar_list")
    for calendar_id in calendar_ids(fake_google):
        scope = events_scope(calendar_id)
        assert load_sync_token(db.conn, USER, Integration.CALENDAR, scope)


def test_events_arrive_over_several_pages_with_the_same_parameters(fake_google, db):
    info = fake_google.add_user(USER, calendars=1, events_per_calendar=2600)

    outcome = sync(fake_google, db, info)

    assert outcome.added == 1 + 2600
    assert fake_google.request_count(USER, "calendar.events.list") == 2
    assert_mirror_is_exact(fake_google, db)


def test_second_sync_is_incremental_and_reports_no_change(fake_google, db, account):
    sync(fake_google, db, account)

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.INCREMENTAL
    assert (outcome.items_processed, outcome.added, outcome.updated, outcome.deleted) == (
        0,
        0,
        0,
        0,
    )
    assert not outcome.changed


def test_incremental_sync_applies_new_changed_and_cancelled_events_with_exact_counts(
    fake_google, db, account
):
    sync(fake_google, db, account)
    first, second, _ = calendar_ids(fake_google)
    events = sorted(fake_google.events(USER, first))
    fake_google.add_event(USER, first, summary="Dentist")
    fake_google.add_event(USER, second, summary="Standup")
    fake_google.update_event(USER, first, events[0], summary="Moved")
    fake_google.delete_event(USER, first, events[1])
    fake_google.delete_event(USER, first, events[2])

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.INCREMENTAL
    assert (outcome.added, outcome.updated, outcome.deleted) == (2, 1, 2)
    assert outcome.items_processed == 5
    assert load_events(db.conn, USER, first)[events[0]].summary == "Moved"
    assert_mirror_is_exact(fake_google, db)


def test_a_calendar_removed_at_google_goes_with_its_events_and_token(fake_google, db, account):
    sync(fake_google, db, account)
    removed = next(c for c, e in fake_google.calendars(USER).items() if not e.get("primary"))
    fake_google.remove_calendar(USER, removed)
    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.INCREMENTAL
    assert (outcome.added, outcome.updated, outcome.deleted) == (0, 0, 1 + 20)
    assert removed not in load_calendars(db.conn, USER)
    assert load_events(db.conn, USER, removed) == {}
    assert load_sync_token(db.conn, USER, Integration.CALENDAR, events_scope(removed)) is None
    assert_mirror_is_exact(fake_google, db)


def test_a_new_calendar_gets_a_full_event_sync_while_the_others_stay_incremental(
    fake_google, db, account
):
    sync(fake_google, db, account)
    new_calendar = fake_google.add_calendar(USER, summary="Climbing")
    fake_google.add_event(USER, new_calendar, summary="Bouldering")

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.FULL  # one scope was listed without a token
    assert not outcome.full_resync
    assert (outcome.added, outcome.updated, outcome.deleted) == (2, 0, 0)
    assert_mirror_is_exact(fake_google, db)


def test_a_410_resyncs_only_that_calendar_and_is_not_a_failure(fake_google, db, account):
    sync(fake_google, db, account)
    first, second, third = calendar_ids(fake_google)
    # The stored token of one calendar is no longer valid at Google.
    with db.conn:
        save_sync_token(
            db.conn, USER, Integration.CALENDAR, events_scope(first), "CKstale", now=utcnow()
        )
    db.conn.execute(
        "INSERT INTO calendar_events (user_id, calendar_id, event_id, etag) VALUES (?, ?, ?, ?)",
        [USER, first, "ghost", '"1"'],
    )
    gone = sorted(fake_google.events(USER, first))[0]
    fake_google.delete_event(USER, first, gone)
    fake_google.add_event(USER, third, summary="Review")
    fake_google.reset_counts()

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.FULL
    assert outcome.full_resync
    # the stale calendar: 19 live events re-listed, the ghost and the deleted one swept
    assert (outcome.added, outcome.updated, outcome.deleted) == (1, 0, 2)
    assert outcome.items_processed == 19 + 1
    # list + (410, full) for the stale calendar + one incremental call for each other one
    assert fake_google.request_count(USER, "calendar.events.list") == 4
    assert_mirror_is_exact(fake_google, db)


def test_expired_tokens_everywhere_fall_back_to_full_syncs_holding_exactly_googles_data(
    fake_google, db, account
):
    sync(fake_google, db, account)
    ids = calendar_ids(fake_google)
    removed = next(c for c in ids if not fake_google.calendars(USER)[c].get("primary"))
    fake_google.remove_calendar(USER, removed)
    kept = next(c for c in ids if c != removed)
    fake_google.delete_event(USER, kept, sorted(fake_google.events(USER, kept))[0])
    fake_google.add_event(USER, kept, summary="Offsite")
    fake_google.expire_sync_tokens(USER)

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.FULL
    assert outcome.full_resync
    assert (outcome.added, outcome.updated, outcome.deleted) == (1, 0, 1 + 20 + 1)
    assert_mirror_is_exact(fake_google, db)
    assert sync(fake_google, db, account).sync_type is SyncType.INCREMENTAL


def test_full_resync_without_stored_tokens_removes_what_google_no_longer_has(
    fake_google, db, account
):
    sync(fake_google, db, account)
    db.conn.execute("DELETE FROM sync_tokens")  # every token was lost
    removed = next(c for c, e in fake_google.calendars(USER).items() if not e.get("primary"))
    fake_google.remove_calendar(USER, removed)

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.FULL
    assert not outcome.full_resync
    assert (outcome.added, outcome.updated, outcome.deleted) == (0, 0, 1 + 20)
    assert_mirror_is_exact(fake_google, db)


def test_a_calendar_that_vanished_before_its_events_were_listed_is_dropped(
    fake_google, db, account
):
    sync(fake_google, db, account)
    db.conn.execute(
        "INSERT INTO calendars (user_id, calendar_id, summary) VALUES (?, 'gone@example.com', 'x')",
        [USER],
    )
    db.conn.execute(
        "INSERT INTO calendar_events (user_id, calendar_id, event_id) VALUES (?, ?, 'e1')",
        [USER, "gone@example.com"],
    )

    outcome = sync(fake_google, db, account)

    assert (outcome.added, outcome.updated, outcome.deleted) == (0, 0, 2)
    assert_mirror_is_exact(fake_google, db)


@pytest.mark.parametrize(
    ("entry", "synced"),
    [
        ({"id": "a", "accessRole": "owner"}, True),
        ({"id": "a", "accessRole": "writer"}, True),
        ({"id": "a", "accessRole": "reader"}, True),
        ({"id": "a", "accessRole": "freeBusyReader"}, False),
        ({"id": "a", "accessRole": "owner", "hidden": True}, False),
        ({"id": "a", "deleted": True}, False),
    ],
)
def test_which_calendar_list_entries_are_mirrored(entry, synced):
    assert is_synced_calendar(entry) is synced


def test_without_the_calendar_list_only_the_mirrored_calendars_events_are_listed(
    fake_google, db, account
):
    # GIVEN a mirrored account, then a new calendar and an event change at Google
    sync(fake_google, db, account)
    first = calendar_ids(fake_google)[0]
    new = fake_google.add_calendar(USER, summary="Team")
    fake_google.add_event(USER, first, summary="Lunch")
    fake_google.reset_counts()

    # WHEN a sync skips the calendar list
    with session_for(fake_google, account) as session:
        outcome = sync_calendar(db, session, USER, now=utcnow, list_calendars=False)

    # THEN no calendarList request is sent, every mirrored calendar's events are listed, the
    # change arrives, and the new calendar is not known yet
    assert fake_google.request_count(USER, "calendar.calendarList.list") == 0
    assert fake_google.request_count(USER, "calendar.events.list") == 3
    assert outcome.added == 1
    assert new not in load_calendars(db.conn, USER)

    # AND the next sync that lists the calendar list finds the new calendar
    sync(fake_google, db, account)
    assert fake_google.request_count(USER, "calendar.calendarList.list") == 1
    assert_mirror_is_exact(fake_google, db)


# -- tokens that cover no data ------------------------------------------------------------------


def write_transactions(db) -> list[str]:
    """The write transactions `db` begins from now on (its trace, as SQLite runs them)."""
    begun: list[str] = []
    db.conn.set_trace_callback(lambda sql: begun.append(sql) if sql == "BEGIN IMMEDIATE" else None)
    return begun


def stored_tokens(db) -> dict[str, str]:
    return dict(db.conn.execute("SELECT scope, token FROM sync_tokens WHERE user_id = ?", [USER]))


def test_a_sync_that_finds_nothing_leaves_its_new_tokens_pending_and_writes_nothing(
    fake_google, db, account
):
    sync(fake_google, db, account)
    before = stored_tokens(db)
    begun = write_transactions(db)
    pending: list[PendingToken] = []

    with session_for(fake_google, account) as session:
        outcome = sync_calendar(db, session, USER, now=utcnow, pending=pending)

    db.conn.set_trace_callback(None)
    assert not outcome.changed
    assert begun == []
    assert stored_tokens(db) == before
    assert sorted(p.scope for p in pending) == sorted(before)
    assert all(p.token != before[p.scope] for p in pending)  # the fake issues a new one
    with transaction(db) as conn:
        save_pending_tokens(conn, USER, pending)
    assert stored_tokens(db) == {p.scope: p.token for p in pending}
    assert not sync(fake_google, db, account).changed  # the stored tokens are Google's latest


@pytest.mark.parametrize(
    ("pending", "change", "pending_scopes"),
    [
        (None, False, []),  # not asked for: every token is written in its page's transaction
        ([], True, ["calendar_list", "second", "third"]),  # the first calendar's has its data
        ([], False, ["calendar_list", "first", "second", "third"]),
    ],
)
def test_only_a_token_with_nothing_to_write_waits(
    fake_google, db, account, pending, change, pending_scopes
):
    sync(fake_google, db, account)
    first, second, third = calendar_ids(fake_google)
    names = {"calendar_list": "calendar_list"} | {
        events_scope(c): n for c, n in ((first, "first"), (second, "second"), (third, "third"))
    }
    if change:
        fake_google.add_event(USER, first, summary="Dentist")
    before = stored_tokens(db)
    begun = write_transactions(db)

    with session_for(fake_google, account) as session:
        sync_calendar(db, session, USER, now=utcnow, pending=pending)

    db.conn.set_trace_callback(None)
    waiting = sorted(names[p.scope] for p in pending or [])
    assert waiting == pending_scopes
    written = sorted(names[s] for s, token in stored_tokens(db).items() if token != before[s])
    assert written == sorted(set(names.values()) - set(pending_scopes))
    assert len(begun) == len(written)  # one page transaction each, none for a pending token
    assert_mirror_is_exact(fake_google, db)


def test_a_full_sync_never_leaves_its_tokens_pending(fake_google, db, account):
    pending: list[PendingToken] = []

    with session_for(fake_google, account) as session:
        sync_calendar(db, session, USER, now=utcnow, pending=pending, full=True)

    assert pending == []
    assert len(stored_tokens(db)) == 4
