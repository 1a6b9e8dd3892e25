"""`syncctl user remove` stops the user's watch channels before forgetting the user."""

import json
import sqlite3

from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.config import Settings
from syncctl.model import Integration, Trigger
from syncctl.orchestrator import orchestrator


def test_remove_stops_the_users_watch_channels_at_google(fake_google, tmp_path, monkeypatch):
    # GIVEN a user whose calendar sync opened one watch channel per calendar
    db_path = tmp_path / "t.db"
    grant = fake_google.add_user("u1", calendars=2, events_per_calendar=3)
    grant_file = tmp_path / "u1.json"
    grant_file.write_text(json.dumps(grant))
    monkeypatch.setenv("SYNCCTL_DB", str(db_path))
    monkeypatch.setenv("SYNCCTL_GOOGLE_ENDPOINT", fake_google.base_url)
    monkeypatch.setenv("SYNCCTL_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    runner = CliRunner()
    runner.invoke(app, ["user", "add", "u1", "--credentials", str(grant_file)])
    settings = Settings(
        db_path=db_path,
        google_endpoint=fake_google.base_url,
        webhook_url="http://127.0.0.1:9/hook",
    )
    with orchestrator(settings) as runner_:
        record = runner_.attempt("u1", Integration.CALENDAR, Trigger.MANUAL)
    assert record.result == "success"
    assert len(fake_google.channels("u1")) == 2

    # WHEN the user is removed
    result = runner.invoke(app, ["user", "remove", "u1"], catch_exceptions=False)

    # THEN both channels are stopped at Google and locally, and the user is gone
    assert result.exit_code == 0
    assert fake_google.channels("u1") == {}
    assert fake_google.request_count("u1", "calendar.channels.stop") == 2
    conn = sqlite3.connect(db_path)
    assert conn.execute(
        "SELECT count(*) FROM webhook_channels WHERE stopped_at IS NULL"
    ).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
