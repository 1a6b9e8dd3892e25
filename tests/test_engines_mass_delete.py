"""The engines hold a mass delete (SPEC 3): nothing deleted, no token moved, until allowed."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import session_for

from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.engines import SyncOutcome
from syncctl.engines.calendar import sync_calendar
from syncctl.engines.contacts import sync_contacts
from syncctl.engines.guard import MassDeleteHeld
from syncctl.fakegoogle import FakeGoogle
from syncctl.model import Integration
from syncctl.policy.mass_delete import Deletions, hold_deletions
from syncctl.store.calendar import load_events
from syncctl.store.contacts import load_contacts
from syncctl.store.sync_tokens import events_scope, load_sync_token

USER = "dora"


def guarded(deletions: Deletions) -> bool:
    return hold_deletions(deletions, Settings())


def allowed(deletions: Deletions) -> bool:
    return hold_deletions(deletions, Settings(), allowed=True)


def sync_people(fake: FakeGoogle, db, info: dict[str, Any], **kwargs: Any) -> SyncOutcome:
    with session_for(fake, info) as session:
        return sync_contacts(db, session, USER, now=utcnow, **kwargs)


def sync_events(fake: FakeGoogle, db, info: dict[str, Any], **kwargs: Any) -> SyncOutcome:
    with session_for(fake, info) as session:
        return sync_calendar(db, session, USER, now=utcnow, **kwargs)


def delete_contacts(fake: FakeGoogle, count: int) -> None:
    for name in sorted(fake.contacts(USER))[:count]:
        fake.delete_contact(USER, name)


def connections_token(db) -> str | None:
    return load_sync_token(db.conn, USER, Integration.CONTACTS, "connections")


def test_incremental_sync_deleting_most_contacts_is_held_with_nothing_deleted(fake_google, db):
    info = fake_google.add_user(USER, contacts=40)
    sync_people(fake_google, db, info, guard=guarded)
    token = connections_token(db)
    delete_contacts(fake_google, 25)

    with pytest.raises(MassDeleteHeld) as held:
        sync_people(fake_google, db, info, guard=guarded)

    assert held.value.deletions == Deletions("contacts", 40, 25)
    assert len(load_contacts(db.conn, USER)) == 40
    assert connections_token(db) == token


def test_held_contacts_deletions_are_applied_when_allowed(fake_google, db):
    info = fake_google.add_user(USER, contacts=40)
    sync_people(fake_google, db, info, guard=guarded)
    delete_contacts(fake_google, 25)
    with pytest.raises(MassDeleteHeld):
        sync_people(fake_google, db, info, guard=guarded)

    outcome = sync_people(fake_google, db, info, guard=allowed)

    assert outcome.deleted == 25
    assert set(load_contacts(db.conn, USER)) == set(fake_google.contacts(USER))


def test_fifteen_of_twenty_contacts_deleted_is_applied(fake_google, db):
    info = fake_google.add_user(USER, contacts=20)
    sync_people(fake_google, db, info, guard=guarded)
    delete_contacts(fake_google, 15)

    outcome = sync_people(fake_google, db, info, guard=guarded)

    assert outcome.deleted == 15
    assert len(load_contacts(db.conn, USER)) == 5


def test_deletions_spread_over_pages_are_held_before_any_page_applies_them(fake_google, db):
    info = fake_google.add_user(USER, contacts=1500)
    sync_people(fake_google, db, info, guard=guarded)
    token = connections_token(db)
    delete_contacts(fake_google, 1100)  # two pages of deletions (pageSize 1000)
    calls = fake_google.request_count(USER, "people.connections.list")

    with pytest.raises(MassDeleteHeld):
        sync_people(fake_google, db, info, guard=guarded)

    assert fake_google.request_count(USER, "people.connections.list") == calls + 2
    assert len(load_contacts(db.conn, USER)) == 1500
    assert connections_token(db) == token


def test_full_sync_whose_sweep_would_empty_a_calendar_is_held(fake_google, db):
    info = fake_google.add_user(USER, calendars=1, events_per_calendar=30)
    sync_events(fake_google, db, info, guard=guarded)
    (calendar_id,) = fake_google.calendars(USER)
    token = load_sync_token(db.conn, USER, Integration.CALENDAR, events_scope(calendar_id))
    for event_id in list(fake_google.events(USER, calendar_id)):
        fake_google.delete_event(USER, calendar_id, event_id)

    with pytest.raises(MassDeleteHeld) as held:
        sync_events(fake_google, db, info, full=True, guard=guarded)

    assert held.value.deletions == Deletions(f"events of calendar {calendar_id}", 30, 30)
    assert len(load_events(db.conn, USER, calendar_id)) == 30
    assert load_sync_token(db.conn, USER, Integration.CALENDAR, events_scope(calendar_id)) == token


def test_a_few_cancelled_events_are_applied_under_the_guard(fake_google, db):
    info = fake_google.add_user(USER, calendars=1, events_per_calendar=30)
    sync_events(fake_google, db, info, guard=guarded)
    (calendar_id,) = fake_google.calendars(USER)
    for event_id in sorted(fake_google.events(USER, calendar_id))[:4]:
        fake_google.delete_event(USER, calendar_id, event_id)

    outcome = sync_events(fake_google, db, info, guard=guarded)

    assert outcome.deleted == 4
    assert set(load_events(db.conn, USER, calendar_id)) == set(
        fake_google.events(USER, calendar_id)
    )


def test_a_calendar_leaving_the_list_with_its_events_is_held(fake_google, db):
    info = fake_google.add_user(USER, calendars=2, events_per_calendar=25)
    sync_events(fake_google, db, info, guard=guarded)
    gone = sorted(fake_google.calendars(USER))[0]
    token = load_sync_token(db.conn, USER, Integration.CALENDAR, "calendar_list")
    fake_google.remove_calendar(USER, gone)

    with pytest.raises(MassDeleteHeld) as held:
        sync_events(fake_google, db, info, guard=guarded)

    assert held.value.deletions == Deletions(f"events of calendar {gone}", 25, 25)
    assert len(load_events(db.conn, USER, gone)) == 25
    assert load_sync_token(db.conn, USER, Integration.CALENDAR, "calendar_list") == token


def test_a_full_listing_that_no_longer_shows_a_calendar_is_held_too(fake_google, db):
    info = fake_google.add_user(USER, calendars=2, events_per_calendar=25)
    sync_events(fake_google, db, info, guard=guarded)
    gone = sorted(fake_google.calendars(USER))[0]
    fake_google.remove_calendar(USER, gone)

    with pytest.raises(MassDeleteHeld):
        sync_events(fake_google, db, info, full=True, guard=guarded)

    assert len(load_events(db.conn, USER, gone)) == 25


def test_a_small_calendar_leaving_the_list_is_removed_with_its_events(fake_google, db):
    info = fake_google.add_user(USER, calendars=2, events_per_calendar=5)
    sync_events(fake_google, db, info, guard=guarded)
    gone = sorted(fake_google.calendars(USER))[0]
    fake_google.remove_calendar(USER, gone)

    outcome = sync_events(fake_google, db, info, guard=guarded)

    assert outcome.deleted == 1 + 5
    assert load_events(db.conn, USER, gone) == {}
    assert db.conn.execute("SELECT count(*) FROM calendars").fetchone() == (1,)
