"""Calendar push notifications (SPEC 5): the receiver over real HTTP, and channels at the fake.

The receiver runs as a real server on a free loopback port; the fake Google POSTs its
notifications to it. Time moves through one injected clock shared by the fake, the Google
session, the receiver and `maintain_channels`, so channel expiry is tested without sleeping.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncctl.clock import from_iso, to_iso, utcnow
from syncctl.config import Settings
from syncctl.engines.calendar import sync_calendar
from syncctl.engines.channels import (
    all_calendars_covered,
    maintain_channels,
    stop_user_channels,
)
from syncctl.fakegoogle import FakeGoogle
from syncctl.google import GoogleSession
from syncctl.model import Integration, Trigger, UserCredentials
from syncctl.receiver import Receiver, handle_notification, make_receiver
from syncctl.store import channels as channel_store
from syncctl.store import open_database
from syncctl.store.channels import ChannelRow
from syncctl.store.state import due_pairs
from syncctl.users import add_user, parse_credentials

USER = "erin"
TOKEN = "channel-token-for-tests-0123456789abcdef"
WATCH = "calendar.events.watch"
STOP = "calendar.channels.stop"
DAY = timedelta(days=1)


class MovableClock:
    """A clock that starts at the real time and moves only when told."""

    def __init__(self) -> None:
        self.moment = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "syncctl.db"


@pytest.fixture
def db(db_path: Path):
    database = open_database(db_path)
    yield database
    database.close()


@pytest.fixture
def log_lines() -> list[str]:
    return []


@pytest.fixture
def receiver(db_path: Path, db, clock: MovableClock, log_lines: list[str]) -> Iterator[Receiver]:
    """The receiver (marking calendars due, no dispatch) on a free loopback port in a thread
    (on the test's db)."""
    server = make_receiver(
        Settings(db_path=db_path),
        "127.0.0.1",
        0,
        clock=clock,
        log_line=log_lines.append,
        dispatch=False,
    )
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def fake(clock: MovableClock) -> Iterator[FakeGoogle]:
    """A fake Google on the test's movable clock."""
    with FakeGoogle(clock=clock) as google:
        yield google


# -- helpers ----------------------------------------------------------------------------------

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url: str, headers: dict[str, str]) -> int:
    """POST an empty notification; return the HTTP status."""
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)  # noqa: S310
    try:
        with _opener.open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def notification(channel_id: str | None, state: str = "exists", token: str | None = TOKEN):
    headers = {"X-Goog-Resource-State": state, "X-Goog-Message-Number": "7"}
    if channel_id is not None:
        headers["X-Goog-Channel-ID"] = channel_id
    if token is not None:
        headers["X-Goog-Channel-Token"] = token
    return headers


def enroll(db, clock: MovableClock, info: dict[str, Any] | None = None) -> None:
    """Add the user (both integrations) with its calendar sync scheduled 4 hours ahead."""
    credentials = (
        parse_credentials(info)
        if info
        else UserCredentials(client_id="cid", client_secret="test-secret", refresh_token="r-1")
    )
    add_user(db, Settings(), USER, credentials, now=clock())
    db.conn.execute(
        "UPDATE sync_schedule SET next_sync_at = ?, last_sync_at = ? WHERE user_id = ?",
        [to_iso(clock() + timedelta(hours=4)), to_iso(clock()), USER],
    )


def store_channel(db, clock: MovableClock, channel_id: str = "chan-1", **changes: Any) -> None:
    row = ChannelRow(
        channel_id=channel_id,
        user_id=USER,
        calendar_id="primary@example.com",
        resource_id="res-1",
        token=TOKEN,
        address="https://hooks.example.com/calendar",
        expiration=to_iso(clock() + 6 * DAY),
        created_at=to_iso(clock()),
    )._replace(**changes)
    channel_store.insert_channel(db.conn, row)


def dump(db_path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, read through a fresh connection."""
    conn = sqlite3.connect(db_path)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}  # noqa: S608
    finally:
        conn.close()


def calendar_schedule(db) -> tuple[str, str | None]:
    return db.conn.execute(
        "SELECT next_sync_at, pending_trigger FROM sync_schedule"
        " WHERE user_id = ? AND integration_type = 'google_calendar'",
        [USER],
    ).fetchone()


# -- the receiver -----------------------------------------------------------------------------


def test_a_known_channel_with_its_token_makes_the_calendar_due_now_as_webhook(db, clock, receiver):
    enroll(db, clock)
    store_channel(db, clock)
    contacts_before = db.conn.execute(
        "SELECT * FROM sync_schedule WHERE integration_type = 'google_contacts'"
    ).fetchall()
    clock.advance(timedelta(minutes=10))

    status = post(receiver.url + "/calendar", notification("chan-1"))

    assert status == 200
    assert calendar_schedule(db) == (to_iso(clock()), "webhook")
    due = due_pairs(db.conn, clock())
    assert [(p.user_id, p.integration, p.trigger) for p in due] == [
        (USER, Integration.CALENDAR, Trigger.WEBHOOK)
    ]
    assert (
        db.conn.execute(
            "SELECT * FROM sync_schedule WHERE integration_type = 'google_contacts'"
        ).fetchall()
        == contacts_before
    )


def test_a_not_exists_notification_also_makes_the_calendar_due(db, clock, receiver):
    enroll(db, clock)
    store_channel(db, clock)

    assert post(receiver.url, notification("chan-1", state="not_exists")) == 200

    assert calendar_schedule(db) == (to_iso(clock()), "webhook")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(notification("chan-1", state="sync"), 200, id="sync-message"),
        pytest.param(notification("chan-new", state="sync"), 200, id="sync-before-stored"),
        pytest.param(notification("chan-unknown"), 404, id="unknown-channel"),
        pytest.param(notification("chan-stopped"), 404, id="stopped-channel"),
        pytest.param(notification("chan-1", token="wrong-" + TOKEN), 403, id="wrong-token"),
        pytest.param(notification("chan-1", token=TOKEN[:-1]), 403, id="token-prefix"),
        pytest.param(notification("chan-1", token=None), 403, id="missing-token"),
        pytest.param(notification(None), 400, id="missing-channel-id"),
    ],
)
def test_refused_or_ignored_notifications_change_no_row(
    db, db_path, clock, receiver, headers, expected
):
    enroll(db, clock)
    store_channel(db, clock)
    store_channel(db, clock, "chan-stopped", stopped_at=to_iso(clock()))
    before = dump(db_path)
    clock.advance(timedelta(minutes=10))

    status = post(receiver.url + "/calendar", headers)

    assert status == expected
    assert dump(db_path) == before


def test_header_names_are_matched_case_insensitively(db, clock):
    enroll(db, clock)
    store_channel(db, clock)
    headers = {
        "x-goog-channel-id": "chan-1",
        "X-GOOG-CHANNEL-TOKEN": TOKEN,
        "x-goog-resource-state": "exists",
    }

    assert handle_notification(db, headers, now=clock()) == 200
    assert calendar_schedule(db)[1] == "webhook"


def test_a_valid_notification_for_a_user_without_calendar_schedule_is_acknowledged(db, clock):
    store_channel(db, clock)  # the user is gone; its channel row was left behind

    assert handle_notification(db, notification("chan-1"), now=clock()) == 200
    assert db.conn.execute("SELECT count(*) FROM sync_schedule").fetchone() == (0,)


def test_a_notification_for_a_revoked_calendar_is_acknowledged_and_changes_nothing(db, clock):
    enroll(db, clock)
    store_channel(db, clock)
    db.conn.execute("UPDATE token_health SET status = 'revoked' WHERE user_id = ?", [USER])
    before = calendar_schedule(db)

    assert handle_notification(db, notification("chan-1"), now=clock()) == 200
    assert calendar_schedule(db) == before


def test_one_log_line_per_notification_and_never_the_token(db, clock, receiver, log_lines):
    enroll(db, clock)
    store_channel(db, clock)

    post(receiver.url, notification("chan-1"))
    post(receiver.url, notification("chan-1", token="guessed-token"))
    post(receiver.url, notification("chan-zzz"))

    assert len(log_lines) == 3
    assert log_lines[0].startswith("webhook 200 exists channel=chan-1 user=erin")
    assert log_lines[1].startswith("webhook 403 ")
    assert log_lines[2].startswith("webhook 404 ")
    assert not any(TOKEN in line or "guessed-token" in line for line in log_lines)


def test_healthz_answers_ok(receiver):
    with _opener.open(receiver.url + "/healthz", timeout=5) as response:
        assert (response.status, response.read()) == (200, b"ok\n")


def command_env(tmp_path: Path) -> dict[str, str]:
    """The environment without syncctl settings or a user config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCCTL_")}
    env["SYNCCTL_SECRET_KEY"] = os.environ["SYNCCTL_SECRET_KEY"]  # conftest: one key per run
    # Never the real Google: a dispatched sync would find nothing listening here.
    return env | {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SYNCCTL_GOOGLE_ENDPOINT": "http://127.0.0.1:9",
    }


def test_webhook_serve_command_receives_until_terminated(tmp_path, db_path, db, clock):
    enroll(db, clock)
    store_channel(db, clock)
    env = command_env(tmp_path)
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "syncctl", "--db", str(db_path), "webhook", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = process.stderr.readline()
        assert first.startswith("webhook receiver listening at http://127.0.0.1:")
        url = first.split(" at ", 1)[1].split()[0]
        assert post(url + "/push", notification("chan-1")) == 200
        assert calendar_schedule(db)[1] == "webhook"
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "webhook 200 exists channel=chan-1" in rest
    assert TOKEN not in first + rest


def test_webhook_serve_refuses_a_busy_port(tmp_path, db_path, receiver):
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "syncctl", "--db", str(db_path), "webhook", "serve"]
        + ["--port", str(receiver.server_address[1])],
        capture_output=True,
        text=True,
        timeout=30,
        env=command_env(tmp_path),
    )
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1:" in result.stderr


def test_webhook_serve_refuses_an_unusable_host_with_one_line(tmp_path, db_path, db):
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "syncctl", "--db", str(db_path), "webhook", "serve"]
        + ["--port", "0", "--host", "256.0.0.1"],
        capture_output=True,
        text=True,
        timeout=30,
        env=command_env(tmp_path),
    )
    assert result.returncode == 2
    assert "cannot listen on 256.0.0.1:0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_webhook_serve_with_a_wrong_secret_key_exits_2_before_listening(
    tmp_path, db_path, db, clock
):
    from cryptography.fernet import Fernet

    enroll(db, clock)  # stores a credential: the database now has a key check
    env = command_env(tmp_path) | {"SYNCCTL_SECRET_KEY": Fernet.generate_key().decode()}

    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "syncctl", "--db", str(db_path), "webhook", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )

    assert result.returncode == 2
    assert "listening" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- channels at the fake Google --------------------------------------------------------------


@pytest.fixture
def account(fake: FakeGoogle, db, clock: MovableClock) -> dict[str, Any]:
    """A user with 3 calendars at the fake, enrolled and with its calendars mirrored."""
    info = fake.add_user(USER, calendars=3, events_per_calendar=2)
    enroll(db, clock, info)
    with session_for(fake, info, clock) as session:
        sync_calendar(db, session, USER, full=False, now=clock)
    return info


def session_for(fake: FakeGoogle, info: dict[str, Any], clock: MovableClock) -> GoogleSession:
    credentials = parse_credentials(info)
    settings = Settings(google_endpoint=fake.base_url, retry_max_attempts=2)
    return GoogleSession(credentials, settings, now=clock, sleep=lambda _: None)


def settings_for(fake: FakeGoogle, receiver: Receiver | None) -> Settings:
    url = receiver.url + "/calendar-push" if receiver else None
    return Settings(google_endpoint=fake.base_url, webhook_url=url, retry_max_attempts=2)


def maintain(fake, info, db, clock, settings):
    with session_for(fake, info, clock) as session:
        return maintain_channels(db, session, USER, settings=settings, now=clock())


def open_rows(db) -> list[ChannelRow]:
    return channel_store.open_channels(db.conn, USER)


def test_maintain_opens_one_channel_per_calendar_and_stores_it(fake, account, db, clock, receiver):
    settings = settings_for(fake, receiver)

    report = maintain(fake, account, db, clock, settings)

    calendars = sorted(fake.calendars(USER))
    assert fake.request_count(USER, WATCH) == 3
    assert report.opened == calendars and report.ok and report.covered
    rows = open_rows(db)
    assert sorted(r.calendar_id for r in rows) == calendars
    at_google = fake.channels(USER)
    for row in rows:
        assert at_google[row.channel_id]["resource_id"] == row.resource_id
        assert at_google[row.channel_id]["token"] == row.token
        assert row.address == settings.webhook_url
        assert from_iso(row.expiration) == clock() + 7 * DAY
    assert len({r.token for r in rows}) == 3


def test_maintain_again_with_current_channels_calls_google_no_more(
    fake, account, db, clock, receiver
):
    settings = settings_for(fake, receiver)
    maintain(fake, account, db, clock, settings)
    clock.advance(3 * DAY)

    report = maintain(fake, account, db, clock, settings)

    assert (report.opened, report.stopped, report.covered) == ([], [], True)
    assert fake.request_count(USER, WATCH) == 3
    assert fake.request_count(USER, STOP) == 0


def test_a_change_at_google_reaches_the_receiver_and_makes_the_calendar_due_now(
    fake, account, db, clock, receiver
):
    maintain(fake, account, db, clock, settings_for(fake, receiver))
    assert fake.flush_notifications()
    calendar_id = sorted(fake.calendars(USER))[1]
    clock.advance(timedelta(minutes=5))

    fake.add_event(USER, calendar_id, summary="Dentist")
    sent = fake.wait_for_notifications(4)

    assert [(n.resource_state, n.status) for n in sent] == [("sync", 200)] * 3 + [("exists", 200)]
    assert sent[-1].calendar_id == calendar_id
    assert calendar_schedule(db) == (to_iso(clock()), "webhook")


def test_channels_are_renewed_just_in_time_and_the_old_ones_left_to_lapse(
    fake, account, db, clock, receiver
):
    settings = settings_for(fake, receiver)
    first = maintain(fake, account, db, clock, settings)
    old = {r.channel_id for r in open_rows(db)}
    assert first.renew_by == clock() + 7 * DAY - timedelta(hours=2)
    clock.advance(6 * DAY + timedelta(hours=21))  # 3 hours before expiry: not yet
    assert maintain(fake, account, db, clock, settings).opened == []
    clock.advance(timedelta(hours=1, minutes=1))  # inside the 2-hour renewal margin

    report = maintain(fake, account, db, clock, settings)

    assert fake.request_count(USER, WATCH) == 6
    assert fake.request_count(USER, STOP) == 0  # a superseded channel is not worth a request
    assert sorted(report.lapsing) == sorted(old) and report.stopped == []
    assert report.renewed == sorted(fake.calendars(USER)) and report.covered
    assert report.renew_by == clock() + 7 * DAY - timedelta(hours=2)
    new = {r.channel_id for r in open_rows(db)} - old
    assert len(new) == 3
    clock.advance(timedelta(hours=2))  # the old ones expire: forgotten without a call

    later = maintain(fake, account, db, clock, settings)

    assert sorted(later.forgotten) == sorted(old) and later.opened == []
    assert {r.channel_id for r in open_rows(db)} == new
    assert fake.request_count(USER, STOP) == 0


def test_a_failed_renewal_keeps_the_old_channel_and_reports_the_error(
    fake, account, db, clock, receiver
):
    settings = settings_for(fake, receiver)
    maintain(fake, account, db, clock, settings)
    old = {r.channel_id for r in open_rows(db)}
    clock.advance(7 * DAY - timedelta(hours=1))
    fake.fail_next(400, user_id=USER, endpoint=WATCH)

    report = maintain(fake, account, db, clock, settings)

    assert len(report.errors) == 1 and "cannot watch calendar" in report.errors[0]
    assert len(report.renewed) == 2 and report.stopped == []
    assert not report.covered and report.renew_by is None  # one calendar is lapsing
    assert old <= {r.channel_id for r in open_rows(db)}


def test_a_watch_error_is_reported_and_never_raised(fake, account, db, clock, receiver):
    fake.set_always_fail(USER, 503)

    report = maintain(fake, account, db, clock, settings_for(fake, receiver))

    assert len(report.errors) == 3 and report.opened == []
    assert not report.covered and open_rows(db) == []
    assert not all_calendars_covered(db.conn, USER, clock())


def test_a_removed_calendar_has_its_channel_stopped(fake, account, db, clock, receiver):
    settings = settings_for(fake, receiver)
    maintain(fake, account, db, clock, settings)
    gone = sorted(fake.calendars(USER))[2]
    fake.remove_calendar(USER, gone)
    with session_for(fake, account, clock) as session:
        sync_calendar(db, session, USER, full=False, now=clock)

    report = maintain(fake, account, db, clock, settings)

    assert fake.request_count(USER, STOP) == 1  # the fake had dropped it: a 404 counts as stopped
    assert len(report.stopped) == 1 and report.opened == [] and report.covered
    assert sorted(r.calendar_id for r in open_rows(db)) == sorted(fake.calendars(USER))


def test_without_a_webhook_url_maintenance_stops_the_open_channels(
    fake, account, db, clock, receiver
):
    maintain(fake, account, db, clock, settings_for(fake, receiver))

    report = maintain(fake, account, db, clock, settings_for(fake, None))

    assert fake.request_count(USER, STOP) == 3 and len(report.stopped) == 3
    assert open_rows(db) == [] and fake.channels(USER) == {} and not report.covered


def test_expired_channels_are_forgotten_without_a_google_call(fake, account, db, clock, receiver):
    settings = settings_for(fake, receiver)
    maintain(fake, account, db, clock, settings)
    expired = {r.channel_id for r in open_rows(db)}
    clock.advance(8 * DAY)

    with session_for(fake, account, clock) as session:
        report = stop_user_channels(db, session, USER, clock())

    assert set(report.forgotten) == expired and report.stopped == []
    assert fake.request_count(USER, STOP) == 0
    assert open_rows(db) == []


def test_stop_user_channels_stops_them_at_google(fake, account, db, clock, receiver):
    maintain(fake, account, db, clock, settings_for(fake, receiver))
    channel_ids = {r.channel_id for r in open_rows(db)}

    with session_for(fake, account, clock) as session:
        report = stop_user_channels(db, session, USER, clock())

    assert fake.request_count(USER, STOP) == 3
    assert set(report.stopped) == channel_ids and report.ok
    assert fake.channels(USER) == {} and open_rows(db) == []
    assert post(receiver.url, notification(sorted(channel_ids)[0], token=None)) == 404


def test_stop_user_channels_of_a_revoked_user_forgets_them_anyway(
    fake, account, db, clock, receiver
):
    maintain(fake, account, db, clock, settings_for(fake, receiver))
    fake.revoke(USER)

    with session_for(fake, account, clock) as session:
        report = stop_user_channels(db, session, USER, clock())

    assert len(report.errors) == 3 and len(report.forgotten) == 3
    assert open_rows(db) == []


def test_coverage_needs_every_calendar_and_a_channel_lasting_past_the_horizon(db, clock):
    enroll(db, clock)
    assert not all_calendars_covered(db.conn, USER, clock())  # no calendars: nothing is pushed
    for calendar_id in ("a@example.com", "b@example.com"):
        db.conn.execute(
            "INSERT INTO calendars (user_id, calendar_id) VALUES (?, ?)", [USER, calendar_id]
        )
    store_channel(db, clock, "c-a", calendar_id="a@example.com", expiration=to_iso(clock() + DAY))
    assert not all_calendars_covered(db.conn, USER, clock())

    store_channel(db, clock, "c-b", calendar_id="b@example.com", expiration=to_iso(clock() + DAY))
    assert all_calendars_covered(db.conn, USER, clock())
    assert not all_calendars_covered(db.conn, USER, clock(), until=clock() + 2 * DAY)
    channel_store.mark_stopped(db.conn, ["c-b"], now=clock())
    assert not all_calendars_covered(db.conn, USER, clock())


# -- which channels an attempt may renew ------------------------------------------------------


def orchestrated(fake, receiver, clock):
    from dataclasses import replace

    from syncctl.orchestrator import Orchestrator

    settings = replace(settings_for(fake, receiver), db_path=receiver.app.db_path)
    return Orchestrator(settings, clock=clock, sleep=lambda _: None)


def test_a_revoked_users_channels_are_never_renewed(fake, account, db, clock, receiver):
    runner = orchestrated(fake, receiver, clock)
    runner.attempt(USER, Integration.CALENDAR, Trigger.SCHEDULED)
    assert fake.request_count(USER, WATCH) == 3
    clock.advance(7 * DAY - timedelta(hours=1))
    db.conn.execute("UPDATE token_health SET status = 'revoked' WHERE user_id = ?", [USER])

    record = runner.attempt(USER, Integration.CALENDAR, Trigger.SCHEDULED)
    runner.close()

    assert record.skip_reason == "invalid_token"
    assert fake.request_count(USER, WATCH) == 3


def test_an_open_breakers_channels_are_never_renewed(fake, account, db, clock, receiver):
    from syncctl.store import state as state_store

    runner = orchestrated(fake, receiver, clock)
    runner.attempt(USER, Integration.CALENDAR, Trigger.SCHEDULED)
    clock.advance(7 * DAY - timedelta(hours=1))
    fake.set_always_fail(USER, 503)
    for _ in range(3):
        runner.attempt(USER, Integration.CALENDAR, Trigger.WEBHOOK)
    assert state_store.load_breaker(db.conn, USER, Integration.CALENDAR).state == "open"
    fake.heal(USER)
    watches = fake.request_count(USER, WATCH)

    record = runner.attempt(USER, Integration.CALENDAR, Trigger.WEBHOOK)
    runner.close()

    assert record.skip_reason == "circuit_open"
    assert fake.request_count(USER, WATCH) == watches == 3


def test_a_removed_calendars_channel_is_stopped_not_renewed(fake, account, db, clock, receiver):
    runner = orchestrated(fake, receiver, clock)
    runner.attempt(USER, Integration.CALENDAR, Trigger.SCHEDULED)
    clock.advance(7 * DAY - timedelta(hours=1))
    gone = sorted(fake.calendars(USER))[0]
    fake.remove_calendar(USER, gone)

    record = runner.attempt(USER, Integration.CALENDAR, Trigger.SCHEDULED)
    runner.close()

    assert record.result == "success"
    assert fake.request_count(USER, WATCH) == 3 + 2
    assert gone not in {r.calendar_id for r in open_rows(db)}
