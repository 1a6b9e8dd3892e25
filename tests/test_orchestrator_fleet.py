"""The orchestrator under the quota budget (SPEC 8) and the mass-delete guard (SPEC 3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from test_orchestrator import CALENDAR, CONTACTS, World, make_world, outcomes

from syncctl import fleet
from syncctl.clock import from_iso
from syncctl.model import Trigger
from syncctl.orchestrator import Orchestrator
from syncctl.store import open_database
from syncctl.store.quota import usage_since


@pytest.fixture
def world(tmp_path: Path):
    yield from make_world(tmp_path)


def orchestrator_with(world: World, **settings) -> Orchestrator:
    return Orchestrator(
        replace(world.settings, **settings), clock=world.clock, sleep=lambda seconds: None
    )


def test_every_google_request_spends_from_its_apis_budget(world):
    world.add_user("ann")

    world.run_due()

    db = open_database(world.db_path)
    # calendarList and the calendar's events (the token refresh spends from no budget)
    assert usage_since(db.conn, 0) == {"calendar": 2}
    db.close()


def test_a_spent_budget_defers_the_pair_with_a_quota_reason_and_sends_nothing(world):
    world.add_user("ann")
    tight = orchestrator_with(world, quota_calendar_per_minute=1)
    try:
        summary = fleet.run_due(tight)
    finally:
        tight.close()

    assert summary is not None
    (attempt,) = summary.attempts
    assert (attempt.result.value, attempt.error_class.value) == ("failure", "quota")
    assert "quota budget" in attempt.error_message
    # the refresh and the calendar list went out; the events request was never sent
    assert attempt.api_calls_made == 2
    assert world.fake.request_count("ann", "calendar.events.list") == 0
    assert world.breaker("ann")["failure_count"] == 0  # quota never counts toward the breaker
    next_sync = from_iso(world.schedule("ann", CALENDAR)["next_sync_at"])
    assert (
        world.clock() + timedelta(seconds=60) <= next_sync <= world.clock() + timedelta(seconds=61)
    )


# -- the mass-delete guard -------------------------------------------------------------------


def contacts_held_world(world: World) -> None:
    """ann's 40 contacts mirrored, then 25 deleted at Google, and the pair due again."""
    world.add_user("ann", (CONTACTS,), contacts=40)
    world.run_due()
    for name in sorted(world.fake.contacts("ann"))[:25]:
        world.fake.delete_contact("ann", name)
    world.move_to_next_sync("ann", CONTACTS)


def mirrored_contacts(world: World) -> int:
    return world.rows("SELECT count(*) FROM contacts WHERE user_id = 'ann'")[0][0]


def people_requests(world: World) -> int:
    return world.fake.request_count("ann", "people.connections.list") + world.fake.request_count(
        "ann", "people.contactGroups.list"
    )


def open_notices(world: World) -> list[tuple]:
    return world.rows(
        "SELECT kind, message FROM notifications WHERE user_id = 'ann' AND resolved_at IS NULL"
    )


def test_a_sync_deleting_most_contacts_is_held_with_one_notice_and_then_not_due(world):
    contacts_held_world(world)

    attempts = world.run_due()

    assert outcomes(attempts) == [("contacts", "skipped", "mass_delete_held")]
    assert "would delete 25 of 40 mirrored contacts" in attempts[0].error_message
    assert mirrored_contacts(world) == 40
    assert world.rows("SELECT mirror, mirrored, deleting FROM mass_delete_holds") == [
        ("contacts", 40, 25)
    ]
    ((kind, message),) = open_notices(world)
    assert kind == "mass_delete_held"
    assert "--allow-mass-delete" in message and "--full" in message
    # Not due while held: later runs send nothing and write no row; the dry run lists nothing.
    calls, rows = people_requests(world), len(world.metrics("ann"))
    world.clock.advance(timedelta(days=7))
    assert world.run_due() == []
    assert world.plan_due() == []
    assert (people_requests(world), len(world.metrics("ann"))) == (calls, rows)


def test_a_held_pair_is_skipped_without_a_google_call_until_the_operator_says_how(world):
    contacts_held_world(world)
    world.run_due()
    calls = people_requests(world)

    skipped = world.orchestrator.attempt("ann", CONTACTS, Trigger.MANUAL)

    assert (skipped.result.value, skipped.skip_reason.value) == ("skipped", "mass_delete_held")
    assert skipped.api_calls_made == 0
    assert people_requests(world) == calls


def test_a_full_resync_is_held_again_while_the_deletions_persist(world):
    contacts_held_world(world)
    world.run_due()

    again = world.orchestrator.attempt("ann", CONTACTS, Trigger.MANUAL, full=True)

    assert again.skip_reason.value == "mass_delete_held"
    assert "would delete 25 of 40" in again.error_message  # the full listing's sweep, counted
    assert mirrored_contacts(world) == 40
    assert len(open_notices(world)) == 1  # still one notice
    assert len(world.rows("SELECT * FROM mass_delete_holds")) == 1


def test_allow_mass_delete_applies_the_deletions_clears_the_hold_and_resolves_the_notice(world):
    contacts_held_world(world)
    world.run_due()

    applied = world.orchestrator.attempt("ann", CONTACTS, Trigger.MANUAL, allow_mass_delete=True)

    assert applied.result.value == "success"
    assert applied.items_deleted == 25
    assert mirrored_contacts(world) == 15
    assert world.rows("SELECT * FROM mass_delete_holds") == []
    assert open_notices(world) == []
    # Due again on its schedule, and synced normally.
    assert outcomes(world.run_due()) == [("contacts", "success", None)]


def test_a_few_deletions_are_applied_by_the_scheduled_sync(world):
    world.add_user("ann", (CONTACTS,), contacts=40)
    world.run_due()
    for name in sorted(world.fake.contacts("ann"))[:5]:
        world.fake.delete_contact("ann", name)
    world.move_to_next_sync("ann", CONTACTS)

    assert outcomes(world.run_due()) == [("contacts", "success", None)]
    assert mirrored_contacts(world) == 35
