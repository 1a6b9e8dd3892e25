"""Hard edges (SPEC 1 and 4): every bad input and bad environment is one line and exit 2, and
nothing is changed or created; no value stored in the database can stop a later run."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.clock import from_iso, utcnow
from syncctl.config import ConfigError, Settings, load_settings
from syncctl.model import Integration, Trigger
from syncctl.orchestrator import orchestrator
from syncctl.store import DatabaseError, open_database, transaction
from syncctl.users import add_user, parse_credentials

GRANT = {
    "type": "authorized_user",
    "client_id": "client-1.apps",
    "client_secret": "secret-value-1",
    "refresh_token": "refresh-value-1",
}
FAST = "retry_max_attempts = 1\nretry_initial_wait_seconds = 0.01\nretry_max_wait_seconds = 0.01\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No syncctl settings from the outside but the run's secret key; XDG homes inside the
    test's directory."""
    base = {k: "" for k in os.environ if k.startswith("SYNCCTL_") and k != "SYNCCTL_SECRET_KEY"}
    return base | {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SYNCCTL_CONFIG": "",
        "COLUMNS": "200",
    }


def run(env: dict[str, str], *args: str) -> Any:
    """Run syncctl in process; an exception escaping the CLI fails the test (no traceback)."""
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def one_error_line(result: Any) -> str:
    """The exit is 2 with exactly one line on stderr; returns it."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("syncctl: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def make_db(path: Path, *users: str) -> Path:
    db = open_database(path)
    try:
        for user in users:
            add_user(db, Settings(), user, parse_credentials(GRANT), now=utcnow())
    finally:
        db.close()
    return path


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- configuration: type and range at load ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("calendar_interval_seconds = 400000000000", "calendar_interval_seconds"),
        ("calendar_interval_seconds = 1e308", "calendar_interval_seconds"),
        ("contacts_interval_seconds = 31536001", "contacts_interval_seconds"),
        ("contacts_interval_seconds = 0", "contacts_interval_seconds"),
        ("contacts_interval_seconds = -5", "contacts_interval_seconds"),
        ("contacts_interval_seconds = true", "contacts_interval_seconds"),
        ("contacts_interval_seconds = '3600'", "contacts_interval_seconds"),
        ("concurrency = 2.5", "concurrency"),
        ("concurrency = 99999999999999999999", "concurrency"),
        ("http_timeout_seconds = inf", "http_timeout_seconds"),
        ("http_timeout_seconds = nan", "http_timeout_seconds"),
        ("db = 5", "db"),
        ('db = ""', "db"),
        ("google_endpoint = 5", "google_endpoint"),
        ('google_endpoint = "http://127.0.0.1:notaport"', "google_endpoint"),
        ('google_endpoint = "http://"', "google_endpoint"),
        ('google_endpoint = "ftp://example.com"', "google_endpoint"),
        ('google_endpoint = "http://127.0.0.1:70000"', "google_endpoint"),
        ("webhook_url = 7", "webhook_url"),
        ("[retry_max_attempts]\nx = 1", "retry_max_attempts"),
        ("no_such_setting = 1", "no_such_setting"),
    ],
)
def test_a_bad_config_value_exits_2_with_one_line_naming_the_setting(tmp_path, env, text, setting):
    db = make_db(tmp_path / "s.db", "u1")
    before = db.read_bytes()
    config = tmp_path / "bad.toml"
    config.write_text(text + "\n")

    line = one_error_line(run(env, "--db", str(db), "--config", str(config), "user", "list"))

    assert setting in line and str(config) in line
    assert db.read_bytes() == before


def test_a_non_utf8_config_file_is_one_line(tmp_path, env):
    config = tmp_path / "latin1.toml"
    config.write_bytes(b"# caf\xe9\nconcurrency = 4\n")
    line = one_error_line(run(env | {"SYNCCTL_CONFIG": str(config)}, "user", "list"))
    assert "is not UTF-8 text" in line


def test_a_bad_setting_from_the_environment_names_the_variable(tmp_path, env):
    make_db(tmp_path / "s.db")
    for endpoint in ("http://", "127.0.0.1:8080", "http://127.0.0.1:notaport"):
        bad = env | {"SYNCCTL_GOOGLE_ENDPOINT": endpoint}
        line = one_error_line(run(bad, "--db", str(tmp_path / "s.db"), "run-due", "--dry-run"))
        assert "SYNCCTL_GOOGLE_ENDPOINT" in line


def test_settings_refuse_overrides_of_the_wrong_type_or_range():
    with pytest.raises(ConfigError, match="concurrency"):
        load_settings(env={}, concurrency=0)
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(env={}, no_such=1)
    assert load_settings(env={}, http_timeout_seconds=5).http_timeout_seconds == 5.0


def test_help_works_whatever_the_config_holds(tmp_path, env):
    config = tmp_path / "broken.toml"
    config.write_bytes(b"\xff concurrency = = =")
    broken = env | {"SYNCCTL_CONFIG": str(config)}
    for args in (["--help"], ["run-due", "--help"], ["user", "add", "--help"], ["breaker"]):
        result = run(broken, *args)
        assert result.exit_code == 0, (args, result.stderr)
        assert "Usage:" in result.stdout


def test_help_names_the_config_option_its_variable_and_default(env):
    text = " ".join(run(env, "--help").stdout.split())
    assert "--config PATH" in text
    assert "SYNCCTL_CONFIG" in text and "$XDG_CONFIG_HOME/syncctl/config.toml" in text


def test_the_config_flag_wins_over_the_environment(tmp_path, env):
    make_db(tmp_path / "s.db")
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(f'db = "{tmp_path / "s.db"}"\n')
    bad.write_text("concurrency = 0\n")
    result = run(env | {"SYNCCTL_CONFIG": str(bad)}, "--config", str(good), "user", "list")
    assert result.exit_code == 0, result.stderr
    assert one_error_line(run(env, "--config", str(tmp_path / "missing.toml"), "user", "list"))


def test_version_and_bare_syncctl(env):
    from syncctl import __version__

    version = run(env, "--version")
    assert (version.exit_code, version.stdout) == (0, f"syncctl {__version__}\n")
    bare = run(env)
    assert bare.exit_code == 0 and "Usage:" in bare.stdout and bare.stderr == ""


# -- numbers on the command line -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run-due", "--limit", "99999999999999999999999"],
        ["run-due", "--concurrency", "99999999999999999999999"],
        ["run-due", "--limit", "0"],
        ["fake-google", "serve", "--port", "70000"],
        ["fake-google", "serve", "--seed", "99999999999999999999999"],
        ["webhook", "serve", "--port", "-1"],
        ["report", "--since", "99999999999999999999999d"],
    ],
)
def test_numbers_out_of_range_are_one_line(tmp_path, env, args):
    db = make_db(tmp_path / "s.db")
    one_error_line(run(env, "--db", str(db), *args))


# -- the database: only user add / import / connect create one -------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run-due"],
        ["run-due", "--dry-run"],
        ["sync", "--user", "u1"],
        ["health"],
        ["breaker", "list"],
        ["breaker", "reset", "--all"],
        ["report"],
        ["user", "list"],
        ["user", "remove", "u1"],
        ["webhook", "serve", "--port", "0"],
    ],
)
def test_a_command_given_a_missing_database_exits_2_and_creates_nothing(tmp_path, env, args):
    missing = tmp_path / "typo" / "deeper" / "syncctl.db"
    line = one_error_line(run(env | {"SYNCCTL_DB": str(missing)}, *args))
    assert f"no syncctl database at {missing}" in line
    assert listing(tmp_path) == set()


def test_the_default_database_is_not_created_by_run_due(tmp_path, env):
    line = one_error_line(run(env, "run-due"))
    assert "no syncctl database at" in line
    assert not (tmp_path / "data").exists()


def test_user_add_creates_the_database_with_mode_0600(tmp_path, env):
    grant = tmp_path / "grant.json"
    grant.write_text(json.dumps(GRANT))
    db = tmp_path / "a" / "b" / "fleet.db"
    result = run(env, "--db", str(db), "user", "add", "u1", "--credentials", str(grant))
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert run(env, "--db", str(db), "user", "list").exit_code == 0


def test_user_add_with_a_bad_credentials_file_creates_no_database(tmp_path, env):
    (tmp_path / "bad.json").write_text("{}")
    db = tmp_path / "fleet.db"
    one_error_line(run(env, "--db", str(db), "user", "add", "u1", "--credentials", "bad.json"))
    assert not db.exists()


def test_an_empty_file_is_no_database_for_commands_that_do_not_create(tmp_path, env):
    empty = tmp_path / "empty.db"
    empty.touch()
    assert "the file is empty" in one_error_line(run(env, "--db", str(empty), "report"))
    assert listing(tmp_path) == {"empty.db"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: "", "--db must not be empty"),
        (lambda tmp: str(tmp), "is a directory"),
        (lambda tmp: str(_regular_file(tmp) / "syncctl.db"), "is a file, not a directory"),
        (lambda tmp: str(_regular_file(tmp) / "a" / "b.db"), "is a file, not a directory"),
    ],
)
def test_a_database_path_that_cannot_be_a_database_is_one_line(tmp_path, env, make, message):
    grant = tmp_path / "grant.json"
    grant.write_text(json.dumps(GRANT))
    path = make(tmp_path)
    for args in (["user", "list"], ["user", "add", "u1", "--credentials", str(grant)]):
        assert message in one_error_line(run(env, "--db", path, *args))


def _regular_file(folder: Path) -> Path:
    path = folder / "plain-file"
    path.write_text("not a folder")
    return path


def test_a_foreign_sqlite_file_in_wal_mode_is_refused_and_nothing_is_created_beside_it(
    tmp_path, env
):
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    grant = tmp_path / "grant.json"
    grant.write_text(json.dumps(GRANT))

    for args in (["run-due"], ["run-due", "--dry-run"], ["user", "add", "u1", "--credentials",
                 str(grant)]):  # fmt: skip
        assert "not a syncctl one; left untouched" in one_error_line(
            run(env, "--db", str(foreign), *args)
        )

    assert foreign.read_bytes() == before
    assert listing(tmp_path) == {"other.db", "grant.json"}  # no lock, no -wal, no -shm


# Root ignores file permissions; without CAP_DAC_OVERRIDE it is held to them like anyone.
NO_OVERRIDE = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)
needs_permissions = pytest.mark.skipif(
    os.geteuid() == 0 and not NO_OVERRIDE, reason="root ignores permissions; setpriv is missing"
)


def run_held_to_permissions(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [*NO_OVERRIDE, sys.executable, "-m", "syncctl", *args]
    return subprocess.run(  # noqa: S603
        command, env=os.environ | env, capture_output=True, text=True, timeout=60, check=False
    )


@needs_permissions
def test_a_read_only_database_file_is_one_line_and_unchanged(tmp_path, env):
    db = make_db(tmp_path / "ro.db", "u1")
    db.chmod(0o400)
    before = db.read_bytes()
    done = run_held_to_permissions(env, "--db", str(db), "breaker", "reset", "--all")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"syncctl: error: {db} is read-only for this user"
                                        " (syncctl needs to read and write it)"]  # fmt: skip
    assert db.read_bytes() == before


@needs_permissions
def test_a_database_in_a_directory_that_is_not_writable_is_one_line(tmp_path, env):
    folder = tmp_path / "locked"
    folder.mkdir()
    db = make_db(folder / "s.db", "u1")
    folder.chmod(0o555)
    try:
        done = run_held_to_permissions(env, "--db", str(db), "run-due")
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert f"the directory {folder} is not writable" in line
        assert sorted(p.name for p in folder.iterdir()) == ["s.db"]
    finally:
        folder.chmod(0o755)


@needs_permissions
def test_a_database_that_cannot_be_created_is_one_line(tmp_path, env):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    grant = tmp_path / "grant.json"
    grant.write_text(json.dumps(GRANT))
    try:
        done = run_held_to_permissions(
            env, "--db", str(folder / "new.db"), "user", "add", "u1", "--credentials", str(grant)
        )
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert "Permission denied" in line and "new.db" in line
    finally:
        folder.chmod(0o755)


def test_writes_are_refused_once_the_database_file_is_deleted(tmp_path):
    db_path = make_db(tmp_path / "gone.db", "u1")
    db = open_database(db_path)
    try:
        db_path.unlink()
        with pytest.raises(DatabaseError, match="was deleted or replaced"):
            with transaction(db) as tx:
                tx.execute("DELETE FROM users")
        assert not db_path.exists()  # and not re-created either
    finally:
        db.close()


def test_run_due_stops_with_one_line_when_the_database_is_deleted_mid_run(
    tmp_path, env, fake_google
):
    db_path = tmp_path / "gone.db"
    db = open_database(db_path)
    for user in ("u1", "u2", "u3"):
        info = fake_google.add_user(user, calendars=1, events_per_calendar=1)
        add_user(db, Settings(), user, parse_credentials(info), now=utcnow())
    db.close()
    fake_google.set_latency(0.2)
    (tmp_path / "fast.toml").write_text(FAST + "concurrency = 1\n")
    live = env | {
        "SYNCCTL_GOOGLE_ENDPOINT": fake_google.base_url,
        "SYNCCTL_CONFIG": str(tmp_path / "fast.toml"),
    }

    def delete_once_google_is_called() -> None:
        deadline = time.monotonic() + 30
        while fake_google.request_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        db_path.unlink()

    deleter = threading.Thread(target=delete_once_google_is_called)
    deleter.start()
    result = run(live, "--db", str(db_path), "run-due")
    deleter.join()

    line = one_error_line(result)
    assert f"the database {db_path} was deleted or replaced" in line
    assert not db_path.exists()  # not re-created by a later connection either


# -- values read back from the database ------------------------------------------------------


def served_fleet(
    tmp_path: Path, env: dict[str, str], fake_google: Any, statements: list[str]
) -> tuple[Path, dict[str, str]]:
    """Users u1 and u2 of the fake Google in a database that `statements` then change, and the
    environment that reaches the fake without slow retries."""
    db_path = tmp_path / "s.db"
    db = open_database(db_path)
    for user in ("u1", "u2"):
        info = fake_google.add_user(user, calendars=1, events_per_calendar=1)
        add_user(db, Settings(), user, parse_credentials(info), now=utcnow())
    db.close()
    conn = sqlite3.connect(db_path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    (tmp_path / "fast.toml").write_text(FAST)
    return db_path, env | {
        "SYNCCTL_GOOGLE_ENDPOINT": fake_google.base_url,
        "SYNCCTL_CONFIG": str(tmp_path / "fast.toml"),
    }


def test_a_stored_interval_out_of_range_never_stops_run_due(tmp_path, env, fake_google):
    # GIVEN the schedule an old syncctl stored from `calendar_interval_seconds = 400000000000`
    db_path, live = served_fleet(tmp_path, env, fake_google, [
        "UPDATE sync_schedule SET default_frequency_seconds = 400000000000,"
        " current_frequency_seconds = 400000000000, consecutive_no_changes = 9223372036854775807,"
        " next_sync_at = strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 minute')"
        " WHERE user_id = 'u1'",
        "UPDATE sync_schedule SET next_sync_at = 'not a time', last_sync_at = 'never'"
        " WHERE user_id = 'u2' AND integration_type = 'google_contacts'",
        "INSERT OR REPLACE INTO circuit_breaker_state (user_id, integration_type, state,"
        " failure_count, next_retry_at) VALUES ('u2', 'google_calendar', 'bogus',"
        " 9223372036854775807, 'garbage')",
    ])  # fmt: skip

    # WHEN run-due runs (twice: the second must not trip over what the first stored)
    first = run(live, "--db", str(db_path), "run-due", "--json")
    second = run(live, "--db", str(db_path), "run-due", "--json")

    # THEN every due pair synced and the stored values are back in range
    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 0, second.stderr
    assert {a["result"] for a in json.loads(first.stdout)["attempts"]} == {"success"}
    conn = sqlite3.connect(db_path)
    rows = conn.execute(
        "SELECT current_frequency_seconds, next_sync_at FROM sync_schedule WHERE user_id = 'u1'"
    ).fetchall()
    conn.close()
    for seconds, next_at in rows:
        assert seconds <= 16 * 365 * 86400
        assert from_iso(next_at) > utcnow()


def unreadable_times() -> list[str]:
    """Statements that store times that do not read, each in its own way."""
    return [statement.format(today=utcnow().date().isoformat()) for statement in UNREADABLE_TIMES]


UNREADABLE_TIMES = [
    # each statement stores times that do not read (`{today}` is today's date)
    "INSERT INTO sync_metrics (user_id, integration_type, trigger, sync_type, result,"
    " created_at) VALUES ('u1', 'google_contacts', 'scheduled', 'incremental', 'success',"
    " '{today}T00:99:00+00:00')",
    "UPDATE sync_schedule SET next_sync_at = '{today}T00:00:00+99:00', last_sync_at = x'00'"
    " WHERE user_id = 'u1'",
    "UPDATE token_health SET status = 'revoked', last_checked = '{today}T25:00:00+00:00'"
    " WHERE user_id = 'u2'",
    "INSERT INTO notifications (user_id, kind, message, created_at) VALUES"
    " ('u2', 'reconnect_required', 'reconnect', '0001-01-01T00:00:00+01:00')",
    "UPDATE circuit_breaker_state SET state = 'open', failure_count = 3,"
    " opened_at = 'garbage', next_retry_at = '2026-02-30T00:00:00+00:00'"
    " WHERE user_id = 'u1'",
    "INSERT INTO fleet_breaker (api, state, window_started_at, opened_at) VALUES"
    " ('calendar', 'closed', '9999-12-31T23:59:59-23:00', 'never')",
    "INSERT INTO mass_delete_holds VALUES ('u1', 'google_calendar', 'events', 20, 19,"
    " 'yesterday')",
    "UPDATE users SET created_at = 'long ago' WHERE id = 'u1'",
]  # fmt: skip


@pytest.mark.parametrize(
    "shown",
    [[], ["--json"], ["--format", "prometheus"], ["--html", "{dir}/r.html"], ["--user", "u1"],
     ["--user", "u1", "--json"], ["--user", "u2", "--html", "{dir}/r.html"]],
)  # fmt: skip
def test_stored_times_that_do_not_read_never_stop_the_report(tmp_path, env, shown):
    # GIVEN every stored time the report reads spoiled, each in its own way
    db = make_db(tmp_path / "s.db", "u1", "u2")
    conn = sqlite3.connect(db)
    for statement in unreadable_times():
        conn.execute(statement)
    conn.commit()
    conn.close()

    # WHEN the report is shown in any format
    args = [arg.format(dir=tmp_path) for arg in shown]
    result = run(env, "--db", str(db), "report", *args)

    # THEN it is shown, with one warning line naming what did not read
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("syncctl: warning: ")
    assert "fleet_breaker.window_started_at" in warnings[0]  # read whatever the scope


def test_report_json_counts_the_stored_times_that_do_not_read(tmp_path, env):
    db = make_db(tmp_path / "s.db", "u1", "u2")
    conn = sqlite3.connect(db)
    for statement in unreadable_times():
        conn.execute(statement)
    conn.execute("UPDATE sync_schedule SET next_sync_at = '2999-01-01T00:00:00+00:00'"
                 " WHERE user_id = 'u2'")  # fmt: skip
    conn.commit()
    conn.close()

    fleet = json.loads(run(env, "--db", str(db), "report", "--json").stdout)
    user = json.loads(run(env, "--db", str(db), "report", "--user", "u1", "--json").stdout)

    # Each spoiled time reads as unknown, and where a figure needs it the rule says how
    assert fleet["unreadable_values"] == [
        "circuit_breaker_state.next_retry_at", "circuit_breaker_state.opened_at",
        "fleet_breaker.opened_at", "fleet_breaker.window_started_at",
        "mass_delete_holds.held_at", "notifications.created_at", "sync_metrics.created_at",
        "sync_schedule.next_sync_at", "token_health.last_checked",
    ]  # fmt: skip
    assert fleet["staleness"]["by_integration"]["contacts"]["never_synced"] == 2
    assert fleet["next_run"]["by_integration"]["contacts"]["due"] == 1  # u1's: due, as in a run
    assert fleet["mass_delete_holds"][0]["held_at"] is None
    assert [u["since"] for u in fleet["token_health"]["reconnect_required"]] == [None]
    assert user["user"]["created_at"] is None
    assert "users.created_at" in user["unreadable_values"]
    assert "sync_schedule.last_sync_at" in user["unreadable_values"]


def test_stored_times_that_do_not_read_never_stop_run_due(tmp_path, env, fake_google):
    # GIVEN the stored times of the report's test spoiled on a fleet the fake Google serves
    db_path, live = served_fleet(tmp_path, env, fake_google, unreadable_times())

    # WHEN the plan is shown and run-due runs
    plan = run(live, "--db", str(db_path), "run-due", "--dry-run", "--json")
    ran = run(live, "--db", str(db_path), "run-due", "--json")

    # THEN both finish: u1's contacts (next_sync_at unreadable) are due and synced
    assert plan.exit_code == 0, plan.stderr
    assert ran.exit_code == 0, ran.stderr
    attempts = json.loads(ran.stdout)["attempts"]
    assert ("u1", "contacts", "success") in {
        (a["user_id"], a["integration_type"], a["result"]) for a in attempts
    }


def test_an_integration_no_syncctl_wrote_never_stops_the_listings(tmp_path, env):
    # GIVEN a pair of an integration this version does not know (a newer syncctl's, or by hand)
    db = make_db(tmp_path / "s.db", "u1", "u2")
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO user_integrations VALUES ('u1', 'google_tasks', '2026-01-01')")
    conn.commit()
    conn.close()

    # WHEN the user list and the report are shown
    listed = run(env, "--db", str(db), "user", "list", "--json")
    table = run(env, "--db", str(db), "report")

    # THEN both show it under its stored name
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout)["users"][0]["integrations"] == [
        "calendar", "contacts", "google_tasks",
    ]  # fmt: skip
    assert table.exit_code == 0, table.stderr
    assert "google_tasks" in table.stdout


def test_user_add_again_over_a_spoiled_schedule_reads_it_clamped(tmp_path, env):
    db = make_db(tmp_path / "s.db", "u1")
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE sync_schedule SET next_sync_at = '2026-02-30T00:00:00+00:00', last_sync_at = 'x',"
        " current_frequency_seconds = 'often', default_frequency_seconds = 1e300"
    )
    conn.commit()
    conn.close()
    (tmp_path / "grant.json").write_text(json.dumps(GRANT))

    again = run(env, "--db", str(db), "user", "add", "u1", "--credentials",
                str(tmp_path / "grant.json"))  # fmt: skip

    assert again.exit_code == 0, again.stderr
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT current_frequency_seconds, next_sync_at FROM sync_schedule")
    for seconds, next_at in rows.fetchall():
        assert isinstance(seconds, int) and seconds > 0
        from_iso(next_at)
    conn.close()


# -- output, breakers, warnings -------------------------------------------------------------


def to_a_closed_pipe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run the installed syncctl with stdout a pipe whose reader has gone (`| head -1` once
    head has its line): every write to it fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [str(Path(sys.executable).with_name("syncctl")), *args],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
            env=os.environ | env, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [["report"], ["report", "--json"], ["report", "--format", "prometheus"], ["user", "list"],
     ["user", "list", "--json"], ["health"], ["breaker", "list", "--all"],
     ["run-due", "--dry-run"], ["--help"], ["report", "--help"], ["user"], ["--version"]],
    ids=" ".join,
)  # fmt: skip
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path, env, args):
    # GIVEN a fleet whose listings are many lines
    db = make_db(tmp_path / "s.db", *(f"u{n:03d}" for n in range(40)))

    # WHEN the command's reader has gone before it prints
    result = to_a_closed_pipe(env, "--db", str(db), *args)

    # THEN it ends with its own status (0 here: all is well) and says nothing on stderr
    assert (result.returncode, result.stderr) == (0, "")


def test_a_reader_that_goes_away_keeps_the_commands_own_exit_status(tmp_path, env):
    db = make_db(tmp_path / "s.db", "u1")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE token_health SET status = 'revoked'")
    conn.commit()
    conn.close()

    result = to_a_closed_pipe(env, "--db", str(db), "health")

    assert (result.returncode, result.stderr) == (1, "")  # exit 1: a token is revoked


def test_integrations_are_shown_by_their_command_line_names(tmp_path, env):
    db = make_db(tmp_path / "s.db", "u1")
    plan = json.loads(run(env, "--db", str(db), "run-due", "--dry-run", "--json").stdout)
    health = json.loads(run(env, "--db", str(db), "health", "--json").stdout)
    breakers = json.loads(run(env, "--db", str(db), "breaker", "list", "--all", "--json").stdout)
    shown = [r["integration_type"] for r in plan["due"] + health["token_health"]]
    shown += [r["integration_type"] for r in breakers["breakers"]]
    assert shown and set(shown) == {"contacts", "calendar"}
    tables = run(env, "--db", str(db), "health").stdout + run(env, "--db", str(db), "report").stdout
    assert "google_" not in tables
    stored = run(env, "--db", str(db), "breaker", "reset", "--user", "u1", "--integration",
                 "google_calendar")  # fmt: skip
    assert stored.exit_code == 0 and "closed 1 breaker(s) of u1" in stored.stdout


def open_breakers(db_path: Path, *users: str) -> None:
    conn = sqlite3.connect(db_path)
    for user in users:
        conn.execute(
            "UPDATE circuit_breaker_state SET state = 'open', failure_count = 3,"
            " next_retry_at = '2999-01-01T00:00:00+00:00' WHERE user_id = ?",
            [user],
        )
    conn.commit()
    conn.close()


def test_breaker_reset_all_closes_every_open_breaker(tmp_path, env):
    db = make_db(tmp_path / "s.db", "u1", "u2", "u3")
    open_breakers(db, "u1", "u3")

    result = run(env, "--db", str(db), "breaker", "reset", "--all")

    assert (result.exit_code, result.stdout) == (0, "reset 4 breaker(s)\n")
    conn = sqlite3.connect(db)
    states = conn.execute("SELECT DISTINCT state, failure_count FROM circuit_breaker_state")
    assert states.fetchall() == [("closed", 0)]
    conn.close()


def test_breaker_reset_needs_exactly_one_of_user_all_and_fleet(tmp_path, env):
    db = make_db(tmp_path / "s.db", "u1")
    open_breakers(db, "u1")
    before = db.read_bytes()
    for args in ([], ["--all", "--user", "u1"], ["--fleet", "--all"], ["--fleet", "--user", "u1"]):
        line = one_error_line(run(env, "--db", str(db), "breaker", "reset", *args))
        assert "give one of --user X, --all or --fleet" in line
    assert db.read_bytes() == before


def test_user_remove_prints_each_channel_warning_once(tmp_path, env, fake_google):
    db_path = tmp_path / "s.db"
    info = fake_google.add_user("u1", calendars=2, events_per_calendar=1)
    make_db(db_path)
    db = open_database(db_path)
    add_user(db, Settings(), "u1", parse_credentials(info), now=utcnow())
    db.close()
    settings = load_settings(
        db=db_path, env={}, google_endpoint=fake_google.base_url, webhook_url="https://x.test/h"
    )
    with orchestrator(settings) as runner:
        assert runner.attempt("u1", Integration.CALENDAR, Trigger.MANUAL).result == "success"
    channels = list(fake_google.channels("u1"))
    assert len(channels) == 2
    fake_google.fail_next(500, count=10, user_id="u1", endpoint="calendar.channels.stop")
    (tmp_path / "fast.toml").write_text(FAST)
    live = env | {
        "SYNCCTL_GOOGLE_ENDPOINT": fake_google.base_url,
        "SYNCCTL_CONFIG": str(tmp_path / "fast.toml"),
    }

    result = run(live, "--db", str(db_path), "user", "remove", "u1")

    assert result.exit_code == 0, result.stderr
    warned = result.stderr.splitlines()
    assert len(warned) == 2, result.stderr
    for channel_id in channels:
        assert sum(channel_id in line for line in warned) == 1
    assert all(line.startswith("syncctl: warning: ") for line in warned)
