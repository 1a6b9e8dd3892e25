"""run-due against Google itself failing (SPEC 3.2 fleet breaker) and a refused OAuth client
(SPEC 3.1 error class `client`), in process against the fake Google on a virtual clock."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from test_orchestrator import CALENDAR, World, make_world

from syncctl import fleet as fleet_loops
from syncctl.fleet import RunSummary
from syncctl.model import ErrorClass, Result, Trigger
from syncctl.run_gates import changed_rows

FIVE_MINUTES = timedelta(minutes=5)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def fleet(world: World) -> dict[str, tuple]:
    rows = world.rows("SELECT api, state, attempts, transient_failures FROM fleet_breaker")
    return {api: (state, attempts, failures) for api, state, attempts, failures in rows}


def run(world: World) -> RunSummary:
    world.orchestrator.settings = replace(world.orchestrator.settings, concurrency=1)
    summary = fleet_loops.run_due(world.orchestrator)
    assert summary is not None
    return summary


def add_users(world: World, count: int) -> None:
    for n in range(count):
        world.add_user(f"u{n:02d}")
    run(world)  # the first, full syncs
    world.clock.advance(4 * timedelta(hours=1))  # every calendar due again


def test_a_google_wide_outage_trips_the_fleet_breaker_at_the_20th_failing_attempt(world):
    add_users(world, 25)
    world.fake.set_outage(503)
    before = world.fake.request_count()

    summary = run(world)

    assert [a.result for a in summary.attempts] == [Result.FAILURE] * 20
    assert summary.held == {"fleet breaker open": 5}
    # the first 3 failed attempts' retried refreshes; then, as it looks like an outage, one
    # request each without retries (single probes); nothing for the five held back
    single = [a.breaker_trial for a in summary.attempts]
    assert single == [False] * 3 + [True] * 17
    assert [a.api_calls_made for a in summary.attempts[3:]] == [1] * 17
    assert world.fake.request_count() - before == 3 * world.settings.retry_max_attempts + 17
    assert fleet(world)["oauth"] == ("open", 20, 20)
    assert [line for line in summary.notes if "fleet breaker open for Google OAuth" in line]


def test_later_runs_send_one_probe_first_until_it_succeeds(world):
    add_users(world, 25)
    world.fake.set_outage(503)
    run(world)

    # WHEN the next run comes while Google is still down, THEN one single-request probe only
    world.clock.advance(FIVE_MINUTES)
    before = world.fake.request_count()
    summary = run(world)
    (probe,) = summary.attempts
    assert (probe.result, probe.breaker_trial, probe.api_calls_made) == (Result.FAILURE, True, 1)
    assert world.fake.request_count() - before == 1
    assert fleet(world)["oauth"][0] == "open"
    assert summary.notes == []  # already reported by the run that opened it

    # WHEN Google is back, THEN the probe succeeds and every held pair runs in the same run
    world.fake.set_outage(None)
    world.clock.advance(FIVE_MINUTES)
    summary = run(world)
    assert {a.result for a in summary.attempts} == {Result.SUCCESS}
    assert len(summary.attempts) == 25  # the failed ones' 5-minute backoffs are over
    assert fleet(world)["oauth"] == ("closed", 24, 0)  # a new window of successes


def test_probes_back_off_from_5_minutes_doubling_to_an_hour_and_runs_between_hold(world):
    add_users(world, 21)
    world.fake.set_outage(503)
    run(world)  # trips at minute 0
    probes_at = []
    for minute in range(5, 5 * 60 + 1, 5):  # WHEN run-due runs every 5 minutes for 5 hours
        world.clock.advance(FIVE_MINUTES)
        before = world.fake.request_count()
        summary = run(world)
        sent = world.fake.request_count() - before
        if summary.attempts:
            assert [(a.breaker_trial, a.api_calls_made) for a in summary.attempts] == [(True, 1)]
            probes_at.append(minute)
        else:  # THEN a run between probes sends nothing and holds every due pair
            assert sent == 0
            assert summary.held["fleet breaker open"] >= 18
    # 5 minutes after it opened, then after as long as it had been open, at most an hour apart
    assert probes_at == [5, 10, 20, 40, 80, 140, 200, 260]
    assert fleet(world)["oauth"][0] == "open"


def test_a_small_fleets_failures_across_runs_trip_it_at_a_few_requests_each(world):
    # GIVEN 12 users added 5 minutes apart: each run-due has one or two pairs due, not 20
    for n in range(12):
        world.add_user(f"u{n:02d}")
        run(world)
        world.clock.advance(FIVE_MINUTES)
    world.clock.advance(4 * timedelta(hours=1) - 12 * FIVE_MINUTES)  # u00 due again
    world.fake.set_outage(503)
    before = world.fake.request_count()

    # WHEN Google is down for the next two hours, run-due every 5 minutes
    sizes = []
    for _ in range(24):
        sizes.append(len(run(world).attempts))
        world.clock.advance(FIVE_MINUTES)

    # THEN no run had 20 attempts, yet 20 failures in a row across runs opened the breaker
    assert max(sizes) < 20
    assert fleet(world)["oauth"][0] == "open"
    # costing the first 3 failures' retries and one request for every other attempt
    rows = world.rows(
        "SELECT breaker_trial, api_calls_made FROM sync_metrics WHERE result = 'failure'"
    )
    retried = [calls for trial, calls in rows if not trial]
    assert retried == [world.settings.retry_max_attempts] * 3
    assert (
        world.fake.request_count() - before == 3 * world.settings.retry_max_attempts + len(rows) - 3
    )


def test_a_success_among_single_requests_ends_them(world):
    add_users(world, 6)
    world.fake.set_outage(503)
    run(world)  # 6 failures: the window looks like an outage, too few to trip
    world.fake.set_outage(None)
    world.clock.advance(FIVE_MINUTES)  # the failed pairs' backoff is over

    summary = run(world)

    # the first is a single request (and succeeds); the rest run with retries as usual
    assert [a.breaker_trial for a in summary.attempts] == [True] + [False] * 5
    assert {a.result for a in summary.attempts} == {Result.SUCCESS}


def test_fewer_than_20_failing_attempts_leave_the_fleet_breaker_closed(world):
    add_users(world, 19)
    world.fake.set_outage(503)

    summary = run(world)

    assert len(summary.attempts) == 19
    assert fleet(world)["oauth"] == ("closed", 19, 19)


def test_a_refused_oauth_client_judges_nobody_and_is_asked_once_a_run(world):
    add_users(world, 3)
    world.fake.rotate_client_secret()  # the stored secret is now the old one
    before = world.fake.request_count()

    summary = run(world)

    (refused,) = summary.attempts
    assert (refused.result, refused.error_class) == (Result.FAILURE, ErrorClass.CLIENT)
    assert "check its secret" in (refused.error_message or "")
    assert summary.held == {"client refused": 2}
    assert world.fake.request_count() - before == 1
    assert [n for n in summary.notes if "refused by Google: check its secret" in n] == summary.notes
    assert len(summary.notes) == 1
    assert world.rows("SELECT DISTINCT status FROM token_health") == [("valid",)]
    assert world.rows("SELECT count(*) FROM notifications") == [(0,)]
    assert world.rows("SELECT max(failure_count) FROM circuit_breaker_state") == [(0,)]
    # the pairs stay due: the next run asks Google once again, and once only
    world.clock.advance(FIVE_MINUTES)
    assert len(run(world).attempts) == 1


def test_a_refused_connection_is_a_failure_that_sent_no_api_call(world, tmp_path):
    world.add_user("ann")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world.orchestrator.settings = replace(
        world.settings, google_endpoint=f"http://127.0.0.1:{port}"
    )

    attempt = world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)

    assert (attempt.result, attempt.error_class) == (Result.FAILURE, ErrorClass.TRANSIENT)
    assert attempt.api_calls_made == 0
    assert attempt.api_calls_saved >= 0


def test_the_dry_run_names_the_probe_and_the_pairs_it_holds(world):
    add_users(world, 21)
    world.fake.set_outage(503)
    run(world)
    world.clock.advance(FIVE_MINUTES)

    plans = fleet_loops.plan_due(world.orchestrator)

    assert [p.action for p in plans] == ["sync"] + ["hold"] * (len(plans) - 1)
    assert plans[0].reason.endswith("(the fleet breaker's probe of Google OAuth)")
    assert len(plans) == 21


CLOSED_PEOPLE = {"api": "people", "state": "closed", "attempts": 0}


@pytest.mark.parametrize(
    ("stored", "rows", "changed"),
    [
        ([], [CLOSED_PEOPLE], [CLOSED_PEOPLE]),  # never stored: saved
        ([CLOSED_PEOPLE], [CLOSED_PEOPLE], []),  # as stored: nothing to write
        ([CLOSED_PEOPLE], [{**CLOSED_PEOPLE, "attempts": 1}], [{**CLOSED_PEOPLE, "attempts": 1}]),
        ([{**CLOSED_PEOPLE, "attempts": "x"}], [CLOSED_PEOPLE], [CLOSED_PEOPLE]),  # unreadable
        ([{"api": "gone", "state": "open"}, CLOSED_PEOPLE], [CLOSED_PEOPLE], []),
    ],
)
def test_changed_rows_are_those_that_differ_from_the_stored_row_of_their_api(stored, rows, changed):
    assert changed_rows(stored, rows) == changed


def test_a_run_that_changes_no_fleet_breaker_writes_no_fleet_breaker_row(world):
    add_users(world, 2)
    run(world)
    statements: list[str] = []
    world.orchestrator.db().conn.set_trace_callback(statements.append)

    summary = run(world)  # nothing is due a moment later

    assert summary.attempts == []
    assert not [s for s in statements if "fleet_breaker" in s or s.startswith("BEGIN")]
    assert set(fleet(world)) == {"people", "calendar", "oauth"}
