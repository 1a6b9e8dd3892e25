"""Each rule is decided once (policy/), so every place that asks it gets the same answer.

These are the drift cases the duplicated copies got wrong: the dry run, the report's "next run"
and the real run on a pair whose half-open trial lease is held; a webhook notification on an
overdue calendar; and the report's expected cost against the savings estimate's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_orchestrator import CALENDAR, HOUR, World, make_world, outcomes

from syncctl import fleet
from syncctl.clock import to_iso
from syncctl.model import BreakerState, Integration, Result, SyncType
from syncctl.policy import savings
from syncctl.receiver import handle_notification
from syncctl.report import build_report
from syncctl.store import open_database
from syncctl.store.metrics import average_calls


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def sql(world: World, statement: str, *params: object) -> None:
    conn = sqlite3.connect(world.db_path)
    with conn:
        conn.execute(statement, params)
    conn.close()


def next_run(world: World) -> dict:
    db = open_database(world.db_path)
    try:
        return build_report(db, now=world.clock(), since=timedelta(days=1))["next_run"]
    finally:
        db.close()


def test_a_held_half_open_lease_is_a_skip_for_the_dry_run_the_report_and_the_run(world: World):
    # GIVEN a due calendar whose breaker is half-open: another process holds the trial lease
    world.add_user("ann")
    world.run_due()
    lease = world.clock() + timedelta(minutes=30)
    sql(
        world,
        "UPDATE circuit_breaker_state SET state = ?, failure_count = 3, next_retry_at = ?",
        BreakerState.HALF_OPEN.value,
        to_iso(lease),
    )
    sql(world, "UPDATE sync_schedule SET next_sync_at = ?", to_iso(world.clock()))
    before = world.fake.request_count(user_id="ann")

    # WHEN the dry run, the report and the run each decide
    (plan,) = fleet.plan_due(world.orchestrator)
    report = next_run(world)["by_integration"]["calendar"]
    attempts = world.run_due()

    # THEN all three skip it as circuit_open, and no request is sent
    assert (plan.action, plan.reason) == (
        "skip",
        f"circuit_open: breaker open until {to_iso(lease)}",
    )
    assert (report["will_run"], report["skip_breaker_open"], report["expected_api_calls"]) == (
        0,
        1,
        0.0,
    )
    assert outcomes(attempts) == [("calendar", "skipped", "circuit_open")]
    assert world.fake.request_count(user_id="ann") == before


def test_a_lapsed_half_open_lease_is_a_trial_for_the_dry_run_the_report_and_the_run(world: World):
    world.add_user("ann")
    world.run_due()
    sql(
        world,
        "UPDATE circuit_breaker_state SET state = ?, failure_count = 3, next_retry_at = ?",
        BreakerState.HALF_OPEN.value,
        to_iso(world.clock() - timedelta(minutes=1)),
    )
    sql(world, "UPDATE sync_schedule SET next_sync_at = ?", to_iso(world.clock()))

    (plan,) = fleet.plan_due(world.orchestrator)
    report = next_run(world)["by_integration"]["calendar"]
    (attempt,) = world.run_due()

    assert plan.action == "sync" and plan.reason.endswith("(half-open trial)")
    assert (report["will_run"], report["skip_breaker_open"]) == (1, 0)
    assert attempt.result is Result.SUCCESS and attempt.breaker_trial


def test_a_notification_never_makes_an_overdue_calendar_due_later(world: World):
    # GIVEN a calendar overdue by an hour, with a watch channel
    world.add_user("ann")
    overdue = world.clock() - HOUR
    sql(world, "UPDATE sync_schedule SET next_sync_at = ?", to_iso(overdue))
    sql(
        world,
        "INSERT INTO webhook_channels (channel_id, user_id, calendar_id, resource_id, token,"
        " address, expiration, created_at) VALUES ('c1', 'ann', 'primary', 'r1', 'tok',"
        " 'http://127.0.0.1:9/hook', ?, ?)",
        to_iso(world.clock() + 24 * HOUR),
        to_iso(world.clock()),
    )

    # WHEN a valid notification arrives
    db = open_database(world.db_path)
    try:
        status = handle_notification(
            db,
            {
                "X-Goog-Channel-ID": "c1",
                "X-Goog-Channel-Token": "tok",
                "X-Goog-Resource-State": "exists",
            },
            now=world.clock(),
        )
    finally:
        db.close()

    # THEN it stays due from the earlier time (policy: the earlier of the two), as a webhook
    assert status == 200
    schedule = world.schedule("ann")
    assert (schedule["next_sync_at"], schedule["pending_trigger"]) == (to_iso(overdue), "webhook")


def test_the_reports_expected_cost_is_the_mean_the_savings_estimate_uses(world: World):
    # GIVEN a calendar with a full first sync, incremental syncs, and a half-open trial
    world.add_user("ann", calendars=2)
    for _ in range(3):
        world.run_due()
        world.move_to_next_sync("ann")
    sql(world, "UPDATE sync_metrics SET breaker_trial = 1, api_calls_made = 40 WHERE id = 3")
    db = open_database(world.db_path)
    try:
        mean = average_calls(db.conn, "ann", CALENDAR, Result.SUCCESS, SyncType.INCREMENTAL)
    finally:
        db.close()
    assert mean is not None

    # WHEN the report estimates the next run
    report = next_run(world)["by_integration"]["calendar"]

    # THEN it expects the same recent mean (trials and full syncs left out)
    assert report["will_run"] == 1
    assert report["expected_api_calls"] == round(savings.calls_per_sync(CALENDAR, mean), 1)


def test_a_pair_without_history_costs_the_savings_fallback_in_the_report(world: World):
    world.add_user("ann", integrations=(Integration.CONTACTS, CALENDAR))
    run = next_run(world)

    assert run["fallback_calls_per_sync"] == {
        i.cli_name: savings.FALLBACK_CALLS_PER_SYNC[i] for i in savings.FALLBACK_CALLS_PER_SYNC
    }
    for integration in (Integration.CONTACTS, CALENDAR):
        block = run["by_integration"][integration.cli_name]
        assert block["expected_api_calls"] == savings.FALLBACK_CALLS_PER_SYNC[integration]
