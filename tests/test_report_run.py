"""The report after a mixed run of the real orchestrator against the fake Google.

Three simulated days of `run-due` every 30 minutes over a small fleet: users whose data changes,
a quiet user whose calendar backs off, a user who revokes access, a user whose Google fails until
the breaker opens, an expired sync token and a manual sync. Then every number in the tables, the
JSON and the Prometheus text must equal an independent recomputation over the stored rows.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from test_report import (
    REASONS,
    assert_prometheus_matches,
    assert_tables_match,
    expected_report,
    fleet_figures,
    set_rollup,
    table,
)
from test_report_html import Dom, bars, chromium, needs_chromium
from typer.testing import CliRunner

from syncctl import fleet
from syncctl.cli import app
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.model import Integration, Trigger
from syncctl.orchestrator import orchestrator
from syncctl.report import build_report
from syncctl.store import open_database
from syncctl.users import add_user, parse_credentials

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
STEP = timedelta(minutes=30)
STEPS = 3 * 48


class MutableClock:
    """The one clock of the run: the fake Google, the orchestrator and the report read it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def breaker_open(db, now: datetime) -> bool:
    row = db.conn.execute(
        "SELECT 1 FROM circuit_breaker_state WHERE state = 'open' AND next_retry_at > ?",
        [now.isoformat(timespec="seconds")],
    ).fetchone()
    return row is not None


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, datetime]:
    """The database after the mixed run, and the moment the run ended."""
    folder = tmp_path_factory.mktemp("run")
    path = folder / "fleet.db"
    clock = MutableClock(START)
    fake = FakeGoogle(clock=clock)
    fake.start()
    try:
        settings = Settings(db_path=path, google_endpoint=fake.base_url, retry_max_attempts=2)
        db = open_database(path)
        accounts = {
            "busy": dict(contacts=6, groups=1, calendars=2, events_per_calendar=4),
            "steady": dict(contacts=4, calendars=1, events_per_calendar=2),
            "quiet": dict(contacts=3, calendars=1, events_per_calendar=2),
            "leaver": dict(contacts=2, calendars=1, events_per_calendar=1),
            "flaky": dict(contacts=2, calendars=1, events_per_calendar=1),
        }
        for user_id, data in accounts.items():
            grant = parse_credentials(fake.add_user(user_id, **data))
            add_user(db, settings, user_id, grant, now=clock())
        busy_calendar = next(iter(fake.calendars("busy")))
        parallel = settings.with_overrides(concurrency=2)
        with orchestrator(parallel, clock=clock, sleep=lambda _: None) as runner:
            for step in range(STEPS):
                if step % 5 == 0:
                    fake.add_event("busy", busy_calendar, summary=f"meeting {step}")
                if step % 20 == 7:
                    fake.add_contact("steady", name=f"Contact {step}")
                if step == 12:
                    fake.revoke("leaver")
                if step == 40:
                    fake.expire_sync_tokens("steady")
                if step == 70:
                    runner.attempt("busy", Integration.CALENDAR, Trigger.MANUAL)
                if step == STEPS - 30:
                    fake.set_always_fail("flaky", 503)
                fleet.run_due(runner)
                clock.now += STEP
            for _ in range(12):  # end the run while the flaky user's breaker is open
                if breaker_open(db, clock()):
                    break
                clock.now += timedelta(minutes=10)
                fleet.run_due(runner)
            # An open pair is not due; an operator's manual sync meanwhile is skipped.
            runner.attempt("flaky", Integration.CALENDAR, Trigger.MANUAL)
        db.close()
    finally:
        fake.stop()
    return path, clock()


@pytest.fixture(params=["raw", "rollup"])
def db(run, tmp_path, request):
    """A copy of the run's database, as it is or with the hourly rollup backfilled."""
    path, _ = run
    copy = tmp_path / "fleet.db"
    source = sqlite3.connect(path)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    database = open_database(copy)
    set_rollup(database, request.param == "rollup")
    yield database
    database.close()


@pytest.fixture
def cli(db, run, monkeypatch, tmp_path):
    monkeypatch.setenv("SYNCCTL_DB", str(tmp_path / "fleet.db"))
    monkeypatch.setenv("SYNCCTL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "none.toml").write_text("")
    runner = CliRunner()

    def invoke(*args: str):
        with freeze_time(run[1]):
            return runner.invoke(app, ["report", *args], catch_exceptions=False)

    return invoke


def test_the_run_produced_every_case_the_report_shows(db, run):
    now = run[1]
    report = build_report(db, now=now, since=timedelta(days=7))
    syncs, calls = report["syncs"]["total"], report["api_calls"]["total"]
    assert syncs["success"] > 50 and syncs["failure"] >= 3
    assert all(syncs["skipped_by_reason"][reason] > 0 for reason in REASONS)
    assert syncs["full_resyncs"] >= 1
    assert syncs["by_trigger"]["manual"] == 2
    assert [u["user_id"] for u in report["token_health"]["reconnect_required"]] == ["leaver"]
    assert {b["user_id"] for b in report["breakers"]["open"]} == {"flaky"}
    assert calls["saved_by"]["adaptive_schedule"] > 0
    assert calls["saved_by"]["token_health"] > 0 and calls["saved_by"]["circuit_breaker"] > 0
    quiet = next(
        s for s in table(db, "sync_schedule")
        if (s["user_id"], s["integration_type"]) == ("quiet", "google_calendar")
    )  # fmt: skip
    assert quiet["current_frequency_seconds"] > quiet["default_frequency_seconds"]


@pytest.mark.parametrize("days", [7, 2, 1])
def test_every_figure_equals_a_recomputation_over_the_tables(db, run, days):
    now, window = run[1], timedelta(days=days)
    assert fleet_figures(build_report(db, now=now, since=window)) == expected_report(
        db, now, window
    )


@pytest.mark.parametrize("user", ["busy", "leaver", "flaky", "quiet"])
def test_each_users_figures_equal_a_recomputation(db, run, user):
    now, window = run[1], timedelta(days=7)
    report = build_report(db, now=now, since=window, user_id=user)
    assert fleet_figures(report) == expected_report(db, now, window, user=user)
    assert len(report["user"]["history"]) == sum(
        1 for m in table(db, "sync_metrics") if m["user_id"] == user
    )


def test_json_equals_the_recomputation(cli, db, run):
    document = json.loads(cli("--json").stdout)
    expected = json.loads(json.dumps(expected_report(db, run[1], timedelta(days=7))))
    assert fleet_figures(document) == expected


def test_prometheus_equals_the_recomputation(cli, db, run):
    result = cli("--format", "prometheus", "--since", "2d")
    assert_prometheus_matches(result.stdout, expected_report(db, run[1], timedelta(days=2)), run[1])


def test_tables_equal_the_recomputation(cli, db, run):
    result = cli()
    assert result.exit_code == 0
    assert_tables_match(result.stdout, expected_report(db, run[1], timedelta(days=7)))


@needs_chromium
def test_the_runs_page_renders_in_chromium_with_its_charts(cli, db, run, tmp_path):
    page = tmp_path / "run.html"
    assert cli("--html", str(page)).exit_code == 0
    dom = Dom()
    dom.feed(chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout)
    expected = expected_report(db, run[1], timedelta(days=7))
    assert bars(dom, "chart-syncs") == {
        (day["date"], series): day[series]
        for day in expected["daily"]
        for series in ("success", "failure", "skipped")
    }
    assert bars(dom, "chart-calls") == {
        (day["date"], series): day[series]
        for day in expected["daily"]
        for series in ("api_calls_made", "api_calls_saved")
    }
    assert sum(day["success"] for day in expected["daily"]) > 50
