"""The report lists held mass deletes and shows the quota budget's use (SPEC 3, SPEC 8)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from syncctl.config import Settings
from syncctl.model import Integration
from syncctl.report import build_report
from syncctl.report_render.prometheus import render_prometheus
from syncctl.report_render.sections import sections
from syncctl.store import transaction
from syncctl.store.holds import save_hold
from syncctl.store.quota import record_spend
from syncctl.store.users import UserGrant
from syncctl.users import parse_credentials, save_grants

NOW = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)
CREDENTIALS = {
    "type": "authorized_user",
    "client_id": "c.apps.example",
    "client_secret": "s",
    "refresh_token": "r",
}


def add_user(db, user_id: str) -> None:
    grant = UserGrant(user_id, parse_credentials(CREDENTIALS), None, (Integration.CONTACTS,))
    save_grants(db, Settings(), [grant], now=NOW)


def test_report_lists_held_pairs_with_what_they_would_delete(db):
    add_user(db, "u1")
    add_user(db, "u2")
    with transaction(db) as conn:
        save_hold(
            conn, "u2", Integration.CONTACTS, mirror="contacts", mirrored=40, deleting=25, now=NOW
        )

    report = build_report(db, now=NOW, since=timedelta(days=1))

    assert report["mass_delete_holds"] == [
        {
            "user_id": "u2",
            "integration": "contacts",
            "mirror": "contacts",
            "mirrored": 40,
            "deleting": 25,
            "held_at": "2026-12-01T12:00:30+00:00",
        }
    ]
    held = next(s for s in sections(report) if s.title == "Held mass deletes")
    assert held.rows == [["u2", "contacts", "contacts", 25, 40, "2026-12-01 12:00"]]
    assert "syncctl_mass_delete_held_pairs 1" in render_prometheus(report)
    assert (
        build_report(db, now=NOW, since=timedelta(days=1), user_id="u1")["mass_delete_holds"] == []
    )


def test_report_shows_the_budgets_use_in_the_last_minute_and_the_peak_minute(db):
    now_second = math.floor(NOW.timestamp())
    with transaction(db) as conn:
        record_spend(conn, "calendar", now_second - 10, 300)
        record_spend(conn, "calendar", now_second - 90, 700)  # the minute before: out of window
        record_spend(conn, "people", now_second - 7200, 5)  # two hours ago: in no figure

    report = build_report(
        db, now=NOW, since=timedelta(days=1), settings=Settings(quota_calendar_per_minute=1200)
    )

    assert report["quota"] == {
        "window_seconds": 60,
        "apis": {
            "calendar": {
                "budget_per_minute": 1200,
                "used_in_window": 300,
                "used_percent": 25.0,
                "peak_minute_last_hour": 700,
            },
            "people": {
                "budget_per_minute": 9000,
                "used_in_window": 0,
                "used_percent": 0.0,
                "peak_minute_last_hour": 0,
            },
        },
    }
    table = next(s for s in sections(report) if s.title == "Quota budget")
    assert table.rows[0] == ["calendar", 1200, 300, "25%", 700]
    assert 'syncctl_quota_used_last_minute{api="calendar"} 300' in render_prometheus(report)
