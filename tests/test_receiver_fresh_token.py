"""The notified sync's second step (receiver.notified_sync): another pair of the user that is
due soon runs on the token the calendar sync left fresh, with no refresh of its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from syncctl.clock import to_iso, utcnow
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.model import Integration, Result, Trigger
from syncctl.orchestrator import Orchestrator
from syncctl.receiver import notified_sync
from syncctl.store import open_database
from syncctl.users import add_user, parse_credentials

USER = "fern"
CAL = Integration.CALENDAR
CON = Integration.CONTACTS


def _synced_user(tmp_path: Path, fake: FakeGoogle) -> Settings:
    settings = Settings(
        db_path=tmp_path / "syncctl.db",
        google_endpoint=fake.base_url,
        webhook_url="http://127.0.0.1:9/push",  # channels open; nobody needs to listen
    )
    info = fake.add_user(USER, calendars=1, events_per_calendar=2)
    db = open_database(settings.db_path)
    try:
        add_user(db, settings, USER, parse_credentials(info), integrations=[CAL, CON], now=utcnow())
    finally:
        db.close()
    runner = Orchestrator(settings)
    try:
        for integration in (CAL, CON):
            assert runner.attempt(USER, integration, Trigger.MANUAL).result is Result.SUCCESS
    finally:
        runner.close()
    return settings


def _contacts_due_in(settings: Settings, delay: timedelta) -> None:
    db = open_database(settings.db_path)
    try:
        with db.conn:
            db.conn.execute(
                "UPDATE sync_schedule SET next_sync_at = ?"
                " WHERE user_id = ? AND integration_type = ?",
                [to_iso(utcnow() + delay), USER, CON.value],
            )
    finally:
        db.close()


@pytest.mark.parametrize(
    ("contacts_due_in", "also"),
    [
        pytest.param(timedelta(hours=2), [CON], id="due-soon-rides-on-the-token"),
        pytest.param(timedelta(days=2), [], id="due-later-waits"),
    ],
)
def test_a_pair_due_soon_syncs_on_the_notified_syncs_fresh_token(
    tmp_path: Path, fake_google: FakeGoogle, contacts_due_in: timedelta, also: list
) -> None:
    settings = _synced_user(tmp_path, fake_google)
    _contacts_due_in(settings, contacts_due_in)
    calendar_id = sorted(fake_google.calendars(USER))[0]
    fake_google.reset_counts()

    runner = Orchestrator(settings)
    try:
        records = notified_sync(runner, USER, frozenset({calendar_id}))
    finally:
        runner.close()

    assert [(r.integration_type, r.trigger) for r in records] == [
        (CAL, Trigger.WEBHOOK),
        *((i, Trigger.SCHEDULED) for i in also),
    ]
    assert all(r.result is Result.SUCCESS for r in records)
    assert fake_google.request_count(USER, "oauth.token") == 0  # the stored token is reused
    people = fake_google.request_count(USER, "people.connections.list")
    assert people == (1 if also else 0)
