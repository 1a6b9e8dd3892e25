"""The orchestrated pipeline (SPEC 3) in process, against the fake Google, on a virtual clock.

The orchestrator and the fake share one VirtualClock, so an hour of breaker time or a day of
schedule passes by moving the clock; retries sleep through a no-op.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncctl import fleet, users
from syncctl.clock import from_iso, to_iso
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.model import Integration, Result, SkipReason, Trigger
from syncctl.orchestrator import Orchestrator
from syncctl.store import open_database

CONTACTS = Integration.CONTACTS
CALENDAR = Integration.CALENDAR
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class VirtualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class World:
    """A fake Google, a database and an orchestrator sharing one virtual clock."""

    clock: VirtualClock
    fake: FakeGoogle
    settings: Settings
    orchestrator: Orchestrator
    db_path: Path
    runners: dict[int, Orchestrator] = field(default_factory=dict)

    def add_user(
        self, user_id: str, integrations: tuple[Integration, ...] = (CALENDAR,), **data: int
    ) -> dict[str, Any]:
        """Create the user at the fake and add it to syncctl; return its credentials."""
        data.setdefault("calendars", 1)
        data.setdefault("events_per_calendar", 2)
        credentials = self.fake.add_user(user_id, **data)
        self.connect(user_id, credentials, integrations)
        return credentials

    def connect(
        self,
        user_id: str,
        credentials: dict[str, Any],
        integrations: tuple[Integration, ...] | None = None,
    ) -> None:
        """`syncctl user add`: add or reconnect a user."""
        db = open_database(self.db_path)
        try:
            users.add_user(
                db,
                self.settings,
                user_id,
                users.parse_credentials(credentials),
                now=self.clock(),
                integrations=integrations,
            )
        finally:
            db.close()

    def runner(self, concurrency: int | None = None) -> Orchestrator:
        """The world's orchestrator, or a long-lived one with its own `--concurrency`."""
        if concurrency is None:
            return self.orchestrator
        if concurrency not in self.runners:
            settings = self.settings.with_overrides(concurrency=concurrency)
            self.runners[concurrency] = Orchestrator(
                settings, clock=self.clock, sleep=lambda seconds: None
            )
        return self.runners[concurrency]

    def run_due(self, concurrency: int | None = None, **kwargs: Any) -> list[Any]:
        summary = fleet.run_due(self.runner(concurrency), **kwargs)
        assert summary is not None
        return summary.attempts

    def plan_due(self) -> list[Any]:
        return fleet.plan_due(self.orchestrator)

    def close(self) -> None:
        self.orchestrator.close()
        for runner in self.runners.values():
            runner.close()

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def row(self, table: str, user_id: str, integration: Integration) -> dict[str, Any]:
        conn = sqlite3.connect(self.db_path)
        conn.row_factory = sqlite3.Row
        try:
            found = conn.execute(
                f"SELECT * FROM {table} WHERE user_id = ? AND integration_type = ?",  # noqa: S608
                [user_id, integration.value],
            ).fetchone()
        finally:
            conn.close()
        assert found is not None
        return dict(found)

    def schedule(self, user_id: str, integration: Integration = CALENDAR) -> dict[str, Any]:
        return self.row("sync_schedule", user_id, integration)

    def breaker(self, user_id: str, integration: Integration = CALENDAR) -> dict[str, Any]:
        return self.row("circuit_breaker_state", user_id, integration)

    def metrics(self, user_id: str) -> list[tuple]:
        return self.rows(
            "SELECT integration_type, trigger, result, skip_reason, error_class, api_calls_made"
            " FROM sync_metrics WHERE user_id = ? ORDER BY id",
            user_id,
        )

    def move_to_next_sync(self, user_id: str, integration: Integration = CALENDAR) -> None:
        self.clock.now = from_iso(self.schedule(user_id, integration)["next_sync_at"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def make_world(tmp_path: Path) -> Iterator[World]:
    """A started world, stopped when the generator is closed."""
    clock = VirtualClock(START)
    fake = FakeGoogle(clock=clock)
    fake.start()
    settings = Settings(db_path=tmp_path / "syncctl.db", google_endpoint=fake.base_url)
    orchestrator = Orchestrator(settings, clock=clock, sleep=lambda seconds: None)
    world = World(clock, fake, settings, orchestrator, settings.db_path)
    try:
        yield world
    finally:
        world.close()
        fake.stop()


def outcomes(attempts: list[Any], user_id: str | None = None) -> list[tuple[str, str, str | None]]:
    return sorted(
        (a.integration_type.cli_name, a.result.value, a.skip_reason and a.skip_reason.value)
        for a in attempts
        if user_id is None or a.user_id == user_id
    )


# -- token health ----------------------------------------------------------------------------


def test_revoked_grant_is_skipped_as_invalid_token_and_revokes_all_the_users_integrations(world):
    world.add_user("ann", (CONTACTS, CALENDAR))
    world.run_due()
    world.fake.revoke("ann")
    world.clock.advance(4 * HOUR)  # the calendar is due again; contacts are not

    attempts = world.run_due()

    assert outcomes(attempts) == [("calendar", "skipped", "invalid_token")]
    assert attempts[0].api_calls_made == 1  # the refresh that was refused
    assert world.rows("SELECT integration_type, status FROM token_health ORDER BY 1") == [
        ("google_calendar", "revoked"),
        ("google_contacts", "revoked"),
    ]


def test_revoked_grant_leaves_one_reconnect_notice_however_many_run_dues_follow(world):
    world.add_user("ann", (CONTACTS, CALENDAR))
    world.run_due()
    world.fake.revoke("ann")
    for _ in range(6):
        world.clock.advance(1 * timedelta(days=1))
        world.run_due()
        world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)

    notices = world.rows("SELECT kind, resolved_at FROM notifications WHERE user_id = 'ann'")
    assert notices == [("reconnect_required", None)]


def test_revoked_user_gets_no_further_request_from_run_due_or_manual_syncs(world):
    world.add_user("ann", (CONTACTS, CALENDAR))
    world.add_user("bob")
    world.run_due()
    world.fake.revoke("ann")
    world.clock.advance(4 * HOUR)
    world.run_due()  # discovers the revocation
    discovered = world.fake.request_count(user_id="ann")

    for _ in range(3):
        world.clock.advance(timedelta(days=3))
        attempts = world.run_due()
        world.orchestrator.attempt("ann", CONTACTS, Trigger.MANUAL, full=True)
        world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)
        assert world.orchestrator.check_token("ann")[0] == "revoked"
        assert {a.skip_reason for a in attempts if a.user_id == "ann"} == {SkipReason.INVALID_TOKEN}

    assert world.fake.request_count(user_id="ann") == discovered
    assert world.fake.request_count(user_id="bob") > 0  # the others keep syncing


def test_invalid_token_skip_advances_next_sync_by_the_current_interval(world):
    world.add_user("ann")
    world.run_due()
    world.fake.revoke("ann")
    for _ in range(3):
        world.move_to_next_sync("ann")
        due_at = world.clock()
        assert outcomes(world.run_due()) == [("calendar", "skipped", "invalid_token")]
        assert world.run_due() == []  # one skip row per scheduled time, not per run-due
        assert world.schedule("ann")["next_sync_at"] == to_iso(due_at + 4 * HOUR)


def test_a_revocation_is_discovered_with_one_request_for_a_user_with_two_integrations(world):
    world.add_user("ann", (CONTACTS, CALENDAR))
    world.fake.revoke("ann")

    attempts = world.run_due()

    assert outcomes(attempts) == [
        ("calendar", "skipped", "invalid_token"),
        ("contacts", "skipped", "invalid_token"),
    ]
    assert world.fake.request_count(user_id="ann") == 1
    assert sum(a.api_calls_made for a in attempts) == 1


def test_reconnecting_with_new_credentials_restores_syncing(world):
    world.add_user("ann", (CONTACTS, CALENDAR))
    world.run_due()
    world.fake.revoke("ann")
    world.clock.advance(4 * HOUR)
    world.run_due()
    world.clock.advance(HOUR)

    world.connect("ann", world.fake.reconnect("ann"))
    attempts = world.run_due()

    assert outcomes(attempts) == [("calendar", "success", None), ("contacts", "success", None)]
    assert world.rows("SELECT status FROM token_health") == [("valid",), ("valid",)]
    assert world.rows("SELECT count(*) FROM notifications WHERE resolved_at IS NULL") == [(0,)]


def test_a_transient_refresh_failure_is_a_sync_failure_not_a_token_verdict(world):
    world.add_user("ann")
    world.fake.fail_next(503, count=20, user_id="ann", endpoint="oauth.token")

    (attempt,) = world.run_due()

    assert (attempt.result, attempt.error_class) == (Result.FAILURE, "transient")
    assert world.rows("SELECT status FROM token_health") == [("unknown",)]
    assert world.breaker("ann")["failure_count"] == 1
    assert world.rows("SELECT count(*) FROM notifications") == [(0,)]


def test_a_token_that_expires_within_five_minutes_is_refreshed_first(world):
    world.add_user("ann")
    world.run_due()  # refreshes: the fake's access tokens live 3599 s
    before = world.fake.request_count(user_id="ann", endpoint="oauth.token")
    world.clock.advance(timedelta(seconds=3599 - 310))
    world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)
    assert world.fake.request_count(user_id="ann", endpoint="oauth.token") == before
    world.clock.advance(timedelta(seconds=20))  # now 290 s before expiry

    world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)

    assert world.fake.request_count(user_id="ann", endpoint="oauth.token") == before + 1


def test_a_refresh_token_rotated_by_google_is_stored_and_used_next_time(world):
    world.add_user("ann")
    world.fake.rotate_refresh_tokens("ann")
    world.run_due()  # the refresh returns a new refresh token and retires the old one
    world.fake.rotate_refresh_tokens("ann", rotate=False)
    world.fake.expire_access_tokens("ann")
    world.clock.advance(4 * HOUR)

    (attempt,) = world.run_due()  # must refresh with the rotated token

    assert attempt.result == Result.SUCCESS
    assert world.rows("SELECT status FROM token_health") == [("valid",)]


# -- circuit breaker -------------------------------------------------------------------------


def open_breaker(world: World, user_id: str = "ann") -> datetime:
    """Three failing run-dues in a row; return when the breaker opened."""
    world.fake.set_always_fail(user_id, 503)
    for _ in range(3):
        assert outcomes(world.run_due(), user_id) == [("calendar", "failure", None)]
        world.clock.advance(timedelta(minutes=10))
    opened = world.breaker(user_id)
    assert opened["state"] == "open"
    return from_iso(opened["opened_at"])


def test_three_transient_failures_on_consecutive_run_dues_open_the_breaker_for_an_hour(world):
    world.add_user("ann")
    world.fake.set_always_fail("ann", 503)
    counts = []
    for _ in range(3):
        assert outcomes(world.run_due()) == [("calendar", "failure", None)]
        breaker = world.breaker("ann")
        counts.append((breaker["state"], breaker["failure_count"]))
        world.clock.advance(timedelta(minutes=10))

    assert counts == [("closed", 1), ("closed", 2), ("open", 3)]
    breaker = world.breaker("ann")
    assert from_iso(breaker["next_retry_at"]) - from_iso(breaker["opened_at"]) == HOUR
    assert breaker["last_failure_reason"].startswith("transient: ")


def test_an_open_pair_is_not_due_so_run_due_writes_no_row_and_makes_no_request(world):
    world.add_user("ann")
    world.add_user("bob")
    opened_at = open_breaker(world)
    before = world.fake.request_count(user_id="ann")
    assert world.schedule("ann")["next_sync_at"] == world.breaker("ann")["next_retry_at"]
    rows = len(world.metrics("ann"))
    while world.clock() + timedelta(minutes=10) < opened_at + HOUR:
        assert [a for a in world.run_due() if a.user_id == "ann"] == []
        world.clock.advance(timedelta(minutes=10))

    assert len(world.metrics("ann")) == rows
    assert world.fake.request_count(user_id="ann") == before
    assert world.breaker("ann")["state"] == "open"


def test_a_sync_asked_for_while_open_is_skipped_with_circuit_open(world):
    world.add_user("ann")
    open_breaker(world)
    before = world.fake.request_count(user_id="ann")

    attempt = world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)

    assert (attempt.result, attempt.skip_reason, attempt.api_calls_made) == (
        Result.SKIPPED,
        SkipReason.CIRCUIT_OPEN,
        0,
    )
    assert world.fake.request_count(user_id="ann") == before


def test_a_circuit_open_skip_saves_the_mean_calls_of_the_pairs_recent_failures(world):
    # GIVEN an open breaker whose three failures each sent a refresh and a retried request
    world.add_user("ann")
    world.fake.fail_next(503, count=15, user_id="ann")  # data requests only: the refresh works
    for failure in range(3):
        if failure:
            world.clock.advance(2 * HOUR)  # past the access token's hour: each one refreshes
        assert outcomes(world.run_due(), "ann") == [("calendar", "failure", None)]
    assert world.breaker("ann")["state"] == "open"
    failed = [row[5] for row in world.metrics("ann") if row[2] == "failure"]
    assert len(failed) == 3
    assert sum(failed) / 3 != world.settings.retry_max_attempts  # not the no-history fallback

    # WHEN a manual sync is asked for while it is open
    attempt = world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)

    # THEN the naive poll it avoided is priced at those failures' mean (a manual N = 1)
    assert attempt.skip_reason is SkipReason.CIRCUIT_OPEN
    assert attempt.api_calls_saved == round(sum(failed) / 3)


def test_the_trial_runs_exactly_one_hour_after_the_breaker_opened(world):
    world.add_user("ann")
    opened_at = open_breaker(world)

    world.clock.now = opened_at + HOUR - timedelta(seconds=1)
    assert outcomes(world.run_due()) == []  # not due while open
    world.clock.now = opened_at + HOUR
    before = world.fake.request_count(user_id="ann")
    assert outcomes(world.run_due()) == [("calendar", "failure", None)]
    assert world.fake.request_count(user_id="ann") > before


def test_a_successful_trial_closes_the_breaker(world):
    world.add_user("ann")
    opened_at = open_breaker(world)
    world.fake.heal("ann")
    world.clock.now = opened_at + HOUR

    assert outcomes(world.run_due()) == [("calendar", "success", None)]
    breaker = world.breaker("ann")
    assert (breaker["state"], breaker["failure_count"], breaker["next_retry_at"]) == (
        "closed",
        0,
        None,
    )
    assert world.schedule("ann")["last_sync_at"] == to_iso(opened_at + HOUR)


def test_failed_trials_reopen_the_breaker_for_2h_then_4h_the_calendar_interval(world):
    world.add_user("ann")
    opened_at = open_breaker(world)
    world.clock.now = opened_at + HOUR

    (trial,) = world.run_due()
    assert (trial.result, trial.breaker_trial, trial.api_calls_made) == (Result.FAILURE, True, 1)
    breaker = world.breaker("ann")
    assert breaker["state"] == "open"
    assert breaker["opened_at"] == to_iso(opened_at + HOUR)
    assert breaker["next_retry_at"] == to_iso(opened_at + 3 * HOUR)
    assert world.schedule("ann")["next_sync_at"] == breaker["next_retry_at"]
    world.clock.advance(timedelta(minutes=90))
    assert outcomes(world.run_due()) == []
    for window in (4 * HOUR, 4 * HOUR):
        world.move_to_next_sync("ann")
        retry_at = world.clock() + window
        assert outcomes(world.run_due()) == [("calendar", "failure", None)]
        assert world.breaker("ann")["next_retry_at"] == to_iso(retry_at)


def test_a_success_resets_the_failure_count(world):
    world.add_user("ann")
    world.fake.set_always_fail("ann", 503)
    world.run_due()
    world.move_to_next_sync("ann")
    world.run_due()
    world.fake.heal("ann")
    world.move_to_next_sync("ann")
    world.run_due()
    world.fake.set_always_fail("ann", 503)
    world.move_to_next_sync("ann")
    world.run_due()

    assert (world.breaker("ann")["state"], world.breaker("ann")["failure_count"]) == ("closed", 1)


def test_invalid_token_skips_and_auth_failures_never_count_toward_the_breaker(world):
    world.add_user("ann")
    world.run_due()
    world.fake.revoke("ann")
    for _ in range(4):
        world.move_to_next_sync("ann")
        world.run_due()

    assert (world.breaker("ann")["state"], world.breaker("ann")["failure_count"]) == ("closed", 0)


# -- adaptive schedule -----------------------------------------------------------------------


def test_five_unchanged_calendar_syncs_double_the_interval_to_eight_hours(world):
    world.add_user("ann")
    world.run_due()  # the first, full sync finds the events: a change
    seen = []
    for _ in range(11):
        world.move_to_next_sync("ann")
        assert outcomes(world.run_due()) == [("calendar", "success", None)]
        row = world.schedule("ann")
        seen.append((row["consecutive_no_changes"], row["current_frequency_seconds"]))
        assert from_iso(row["next_sync_at"]) == from_iso(row["last_sync_at"]) + timedelta(
            seconds=row["current_frequency_seconds"]
        )
        assert row["last_sync_at"] == to_iso(world.clock())

    # The cap (twice the default) holds the interval at 8 hours however quiet the calendar.
    assert seen == [(n, 14400) for n in range(1, 5)] + [(n, 28800) for n in range(5, 12)]


def test_scheduled_syncs_list_the_calendar_list_once_a_day_and_claim_what_naive_sent(world):
    # GIVEN a user with two calendars, mirrored by the first (full) sync at 09:00
    world.add_user("ann", calendars=2)
    world.run_due()
    listed, hours = [], []
    for _ in range(7):  # WHEN scheduled syncs follow (every 4 hours, 8 after five quiet ones)
        world.fake.reset_counts()
        before = world.clock()
        world.move_to_next_sync("ann")
        (attempt,) = world.run_due()
        listed.append(world.fake.request_count("ann", "calendar.calendarList.list"))
        hours.append((world.clock() - START) / HOUR)
        # THEN each sent its refresh and the events of the 2 calendars, plus the list when due
        assert attempt.api_calls_made == 3 + listed[-1]
        # AND claims what the naive polls of its stretch sent (each: refresh, list, 2
        # events.list) minus what it sent
        polls = (world.clock() - before) / (4 * HOUR)
        assert attempt.api_calls_saved == 4 * polls - attempt.api_calls_made
    # the list is listed again only once its last listing (the first sync's) is 24 hours old
    assert hours == [4, 8, 12, 16, 20, 28, 36]
    assert listed == [0, 0, 0, 0, 0, 1, 0]
    skipped = world.rows("SELECT calendar_list_skipped FROM sync_metrics ORDER BY id")
    assert [s for (s,) in skipped] == [0, 1, 1, 1, 1, 1, 0, 1]


def test_a_new_calendar_is_noticed_by_the_first_sync_after_the_list_cadence(world):
    world.add_user("ann", calendars=1)
    world.run_due()
    new = world.fake.add_calendar("ann", summary="Team")
    world.move_to_next_sync("ann")
    world.run_due()  # within the cadence: not yet
    assert not world.rows("SELECT 1 FROM calendars WHERE calendar_id = ?", new)

    world.clock.now = START + timedelta(days=1)
    world.run_due()

    assert world.rows("SELECT 1 FROM calendars WHERE calendar_id = ?", new) == [(1,)]


def test_a_notified_sync_keeps_the_safety_poll_where_the_last_scheduled_sync_put_it(world):
    # GIVEN a first sync at 09:00 (it lists the calendar list) and a scheduled one at 13:00
    # (within the list's cadence: events only)
    world.add_user("ann")
    world.run_due()
    world.move_to_next_sync("ann")
    world.run_due()
    polled = world.clock()
    world.clock.advance(HOUR)

    # WHEN a notified sync of the primary calendar runs at 14:00
    world.orchestrator.attempt("ann", CALENDAR, Trigger.WEBHOOK, only={"primary"})

    # THEN the next scheduled sync stays at 13:00 + 4 h, not at the list's 09:00 + 4 h (due now)
    assert world.schedule("ann")["next_sync_at"] == to_iso(polled + 4 * HOUR)


def test_a_manual_sync_always_lists_the_calendar_list(world):
    world.add_user("ann")
    world.run_due()
    world.fake.reset_counts()
    world.clock.advance(HOUR)

    world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)

    assert world.fake.request_count("ann", "calendar.calendarList.list") == 1


def test_quiet_contacts_back_off_to_six_days_below_the_seven_day_sync_token_lifetime(world):
    world.add_user("ann", (CONTACTS,), contacts=2)
    world.run_due()
    for _ in range(7):
        world.move_to_next_sync("ann", CONTACTS)
        (attempt,) = world.run_due()
        assert (attempt.result, attempt.sync_type) == (Result.SUCCESS, "incremental")

    row = world.schedule("ann", CONTACTS)
    assert (row["consecutive_no_changes"], row["current_frequency_seconds"]) == (7, 6 * 86400)


def test_a_change_at_google_restores_the_four_hour_interval_and_zeroes_the_counter(world):
    world.add_user("ann")
    world.run_due()
    for _ in range(5):
        world.move_to_next_sync("ann")
        world.run_due()
    assert world.schedule("ann")["current_frequency_seconds"] == 28800

    world.fake.add_event("ann", "primary", summary="Dentist")
    world.move_to_next_sync("ann")
    (attempt,) = world.run_due()

    assert attempt.items_added == 1
    row = world.schedule("ann")
    assert (row["current_frequency_seconds"], row["consecutive_no_changes"]) == (14400, 0)
    assert row["next_sync_at"] == to_iso(world.clock() + 4 * HOUR)


def test_manual_syncs_never_change_the_schedule(world):
    world.add_user("ann")
    world.run_due()
    for _ in range(3):
        world.move_to_next_sync("ann")
        world.run_due()
    before = world.schedule("ann")

    world.clock.advance(HOUR)
    world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)  # unchanged
    world.fake.add_event("ann", "primary", summary="Lunch")
    world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)  # changed
    world.fake.set_always_fail("ann", 503)
    world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)  # failed

    assert world.schedule("ann") == before
    assert [m[1:3] for m in world.metrics("ann")[-3:]] == [
        ("manual", "success"),
        ("manual", "success"),
        ("manual", "failure"),
    ]


def test_transient_failures_are_retried_after_5_then_10_minutes_not_every_run_due(world):
    world.add_user("ann")
    world.fake.set_always_fail("ann", 503)
    failed_at = world.clock()
    world.run_due()

    assert world.schedule("ann")["next_sync_at"] == to_iso(failed_at + timedelta(minutes=5))
    world.clock.advance(timedelta(minutes=4))
    assert outcomes(world.run_due()) == []
    world.clock.advance(timedelta(minutes=1))
    assert outcomes(world.run_due()) == [("calendar", "failure", None)]
    assert world.schedule("ann")["next_sync_at"] == to_iso(world.clock() + timedelta(minutes=10))


# -- tokens that cover no data ------------------------------------------------------------------


def write_transactions(trace: list[str]) -> list[list[str]]:
    """The statements of each BEGIN IMMEDIATE ... COMMIT in a connection's trace."""
    units: list[list[str]] = []
    for sql in trace:
        if sql == "BEGIN IMMEDIATE":
            units.append([])
        elif units and sql != "COMMIT":
            units[-1].append(sql)
    return units


def test_an_attempt_that_finds_nothing_stores_its_new_tokens_with_its_record(world):
    world.add_user("ann", (CONTACTS, CALENDAR))
    world.run_due()
    before = dict(world.rows("SELECT scope, token FROM sync_tokens"))
    conn = world.orchestrator.db().conn
    trace: list[str] = []
    conn.set_trace_callback(trace.append)

    for integration in (CONTACTS, CALENDAR):
        record = world.orchestrator.attempt("ann", integration, Trigger.MANUAL)
        assert (record.result, record.items_processed) == (Result.SUCCESS, 0)

    conn.set_trace_callback(None)
    writing_tokens = [
        unit
        for unit in write_transactions(trace)
        if any(sql.startswith("INSERT INTO sync_tokens") for sql in unit)
    ]
    assert len(writing_tokens) == 2  # one per attempt: its record's
    for unit in writing_tokens:
        assert any(sql.startswith("INSERT INTO sync_metrics") for sql in unit)
    after = dict(world.rows("SELECT scope, token FROM sync_tokens"))
    assert sorted(after) == sorted(before)
    assert len(after) == 4  # connections, contact_groups, calendar_list, one calendar's events
    assert all(after[scope] != before[scope] for scope in before)  # Google's newer tokens


def test_a_record_that_fails_to_commit_leaves_the_old_tokens_and_the_next_sync_is_exact(world):
    world.add_user("ann")
    world.run_due()
    before = world.rows("SELECT scope, token FROM sync_tokens ORDER BY scope")
    conn = world.orchestrator.db().conn
    conn.execute(
        "CREATE TEMP TRIGGER lose_the_record BEFORE INSERT ON sync_metrics"
        " BEGIN SELECT RAISE(ABORT, 'the disk went away'); END"
    )

    with pytest.raises(sqlite3.DatabaseError, match="the disk went away"):
        world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)

    conn.execute("DROP TRIGGER lose_the_record")
    assert world.rows("SELECT scope, token FROM sync_tokens ORDER BY scope") == before
    calendar_id = next(iter(world.fake.calendars("ann")))
    world.fake.add_event("ann", calendar_id, summary="Dentist")
    record = world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)
    assert (record.result, record.items_added) == (Result.SUCCESS, 1)  # from the old token
    mirrored = world.rows("SELECT event_id FROM calendar_events WHERE user_id = 'ann'")
    assert sorted(e for (e,) in mirrored) == sorted(world.fake.events("ann", calendar_id))


# -- metrics and quota -----------------------------------------------------------------------


def test_every_attempt_writes_exactly_one_metrics_row(world):
    world.add_user("ann", (CONTACTS, CALENDAR))
    world.add_user("bob")
    world.add_user("cy")
    world.fake.revoke("bob")
    world.fake.set_always_fail("cy", 503)
    attempts = []
    for _ in range(5):
        attempts += world.run_due()
        attempts.append(world.orchestrator.attempt("ann", CONTACTS, Trigger.MANUAL))
        world.clock.advance(timedelta(hours=2))

    assert {a.result for a in attempts} == set(Result)
    assert world.rows("SELECT count(*) FROM sync_metrics") == [(len(attempts),)]
    stored = world.rows(
        "SELECT user_id, integration_type, result, api_calls_made FROM sync_metrics ORDER BY id"
    )
    expected = [(a.user_id, a.integration_type, a.result, a.api_calls_made) for a in attempts]
    assert sorted(stored) == sorted(expected)


@pytest.mark.parametrize(
    "fault",
    [
        "none",
        "full",
        "expired_access_token",
        "expired_sync_tokens",
        "retried_503",
        "always_503",
        "revoked",
        "quota",
    ],
)
def test_api_calls_made_equals_the_requests_google_received_during_the_attempt(world, fault):
    world.add_user("ann", (CONTACTS, CALENDAR), contacts=3, groups=1, calendars=2)
    world.run_due()
    world.clock.advance(timedelta(minutes=20))
    if fault == "expired_access_token":
        world.fake.expire_access_tokens("ann")
    elif fault == "expired_sync_tokens":
        world.fake.expire_sync_tokens("ann")
    elif fault == "retried_503":
        world.fake.fail_next(503, count=2, user_id="ann")
    elif fault == "always_503":
        world.fake.set_always_fail("ann", 503)
    elif fault == "revoked":
        world.fake.revoke("ann")
        world.fake.expire_access_tokens("ann")
    elif fault == "quota":
        world.fake.fail_next(429, count=100, user_id="ann", retry_after=5)

    for integration in (CONTACTS, CALENDAR):
        before = world.fake.request_count(user_id="ann")
        attempt = world.orchestrator.attempt(
            "ann", integration, Trigger.SCHEDULED, full=fault == "full"
        )
        assert attempt.api_calls_made == world.fake.request_count(user_id="ann") - before
    assert world.fake.request_count(user_id=None) == world.fake.request_count(user_id="ann")


def test_quota_errors_defer_the_pair_by_retry_after_and_are_recorded_as_quota_failures(world):
    world.add_user("ann")
    world.run_due()
    world.move_to_next_sync("ann")
    world.fake.fail_next(429, count=1000, user_id="ann", retry_after=120)

    (attempt,) = world.run_due()

    assert (attempt.result, attempt.error_class) == (Result.FAILURE, "quota")
    assert world.schedule("ann")["next_sync_at"] == to_iso(world.clock() + timedelta(seconds=120))
    assert world.metrics("ann")[-1] == (
        "google_calendar",
        "scheduled",
        "failure",
        None,
        "quota",
        attempt.api_calls_made,
    )
    assert world.run_due() == []  # deferred: not due again before Retry-After


def test_quota_errors_retried_in_process_honour_retry_after_then_defer(world):
    world.add_user("ann")
    world.run_due()
    world.move_to_next_sync("ann")
    world.fake.fail_next(429, count=1000, user_id="ann", retry_after=7)
    slept: list[float] = []
    world.orchestrator.sleep = slept.append

    (attempt,) = world.run_due()

    assert attempt.error_class == "quota"
    assert len(slept) == world.settings.retry_max_attempts - 1
    assert all(seconds >= 7 for seconds in slept)
    assert world.schedule("ann")["next_sync_at"] == to_iso(world.clock() + timedelta(seconds=7))


def test_quota_failures_do_not_move_the_breaker(world):
    world.add_user("ann")
    world.fake.set_always_fail("ann", 503)
    world.run_due()
    world.move_to_next_sync("ann")
    world.run_due()
    world.fake.heal("ann")
    world.move_to_next_sync("ann")
    before = world.breaker("ann")
    for _ in range(4):
        world.fake.fail_next(429, count=1000, user_id="ann", retry_after=60)
        assert outcomes(world.run_due()) == [("calendar", "failure", None)]
        world.fake.heal("ann")
        world.move_to_next_sync("ann")

    assert world.breaker("ann") == before
    assert (before["state"], before["failure_count"]) == ("closed", 2)


def test_a_quota_failure_without_retry_after_defers_by_the_configured_backoff(world):
    world.add_user("ann")
    world.run_due()
    world.move_to_next_sync("ann")
    world.fake.fail_next(403, count=1000, user_id="ann", reason="rateLimitExceeded")

    (attempt,) = world.run_due()

    assert attempt.error_class == "quota"
    deferred = world.clock() + timedelta(seconds=world.settings.quota_defer_seconds)
    assert world.schedule("ann")["next_sync_at"] == to_iso(deferred)


# -- dry run ---------------------------------------------------------------------------------


def test_plan_due_says_why_each_pair_would_run_or_be_skipped_and_changes_nothing(world):
    for user_id in ("fresh", "synced", "gone", "flaky", "healing"):
        world.add_user(user_id)
    world.run_due()
    world.fake.revoke("gone")
    world.fake.set_always_fail("flaky", 503)
    world.fake.set_always_fail("healing", 503)
    world.clock.advance(4 * HOUR)
    world.run_due()  # gone: revoked; flaky and healing fail once
    world.clock.advance(timedelta(minutes=5))
    world.run_due()
    world.clock.advance(timedelta(minutes=10))
    world.run_due()  # flaky and healing: breakers open at T
    opened = from_iso(world.breaker("healing")["opened_at"])
    conn = sqlite3.connect(world.db_path)
    with conn:
        conn.execute("DELETE FROM sync_tokens WHERE user_id = 'fresh'")
        conn.execute("UPDATE sync_schedule SET next_sync_at = ?", [to_iso(opened)])
        conn.execute(
            "UPDATE circuit_breaker_state SET next_retry_at = ? WHERE user_id = 'healing'",
            [to_iso(opened)],
        )
    conn.close()
    world.clock.now = opened
    tables = dump_tables(world.db_path)

    plans = {p.user_id: (p.trigger.value, p.action, p.reason) for p in world.plan_due()}

    assert dump_tables(world.db_path) == tables
    # the last 6 attempts (flaky's and healing's) failed at Google: the others go out without
    # retries until one succeeds (the fleet breaker's single requests)
    single = " (without retries: the latest attempts failed at Google)"
    assert plans == {
        "fresh": ("scheduled", "sync", "full sync, scheduled due" + single),
        "synced": ("scheduled", "sync", "incremental sync, scheduled due" + single),
        "gone": ("scheduled", "skip", "invalid_token: the grant is revoked; user must reconnect"),
        "flaky": (
            "scheduled",
            "skip",
            f"circuit_open: breaker open until {to_iso(opened + HOUR)}",
        ),
        "healing": ("scheduled", "sync", "incremental sync, scheduled due (half-open trial)"),
    }


def dump_tables(db_path: Path) -> dict[str, list[tuple]]:
    """Every row of every table (and the schema), to show that something changed nothing."""
    conn = sqlite3.connect(db_path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        dump = {name: sorted(conn.execute(f"SELECT * FROM {name}"), key=repr) for name in names}  # noqa: S608
        dump["sqlite_master"] = sorted(conn.execute("SELECT * FROM sqlite_master"), key=repr)
        return dump
    finally:
        conn.close()


# -- auth errors other than invalid_grant ----------------------------------------------------


def test_a_missing_scope_revokes_only_that_integration_and_never_counts_for_the_breaker(world):
    world.add_user(
        "ann", (CONTACTS, CALENDAR), scopes=["https://www.googleapis.com/auth/contacts.readonly"]
    )

    attempts = world.run_due()

    assert outcomes(attempts) == [("calendar", "failure", None), ("contacts", "success", None)]
    assert [a.error_class for a in attempts if a.integration_type is CALENDAR] == ["auth"]
    assert world.rows("SELECT integration_type, status FROM token_health ORDER BY 1") == [
        ("google_calendar", "revoked"),
        ("google_contacts", "valid"),
    ]
    assert world.rows("SELECT count(*) FROM notifications") == [(1,)]
    assert (world.breaker("ann")["state"], world.breaker("ann")["failure_count"]) == ("closed", 0)
    world.move_to_next_sync("ann")
    before = world.fake.request_count(user_id="ann")
    assert outcomes(world.run_due()) == [("calendar", "skipped", "invalid_token")]
    assert world.fake.request_count(user_id="ann") == before


def test_a_401_that_a_refresh_cannot_cure_is_an_auth_failure_not_a_breaker_failure(world):
    world.add_user("ann")
    world.run_due()
    world.move_to_next_sync("ann")
    world.fake.fail_next(401, count=10, user_id="ann")

    (attempt,) = world.run_due()

    assert (attempt.result, attempt.error_class) == (Result.FAILURE, "auth")
    assert world.rows("SELECT status FROM token_health") == [("revoked",)]
    assert world.breaker("ann")["failure_count"] == 0
    # Like a revoked grant, the pair moves on by its interval rather than staying due.
    assert world.schedule("ann")["next_sync_at"] == to_iso(world.clock() + 4 * HOUR)
