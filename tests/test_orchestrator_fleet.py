"""The orchestrator under the quota budget (SPEC 8) and the mass-delete guard (SPEC 3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from test_orchestrator import CALENDAR, World, make_world

from syncctl import fleet
from syncctl.clock import from_iso
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
