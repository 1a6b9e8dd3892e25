"""`run-due`, `sync`, `health` and `breaker` through the installed `syncctl` command.

Each test runs the real console script as a subprocess with SYNCCTL_DB and
SYNCCTL_GOOGLE_ENDPOINT set, against the fake Google of the `fake_google` fixture (real clock).
Retries are configured to wait milliseconds, so failing syncs stay fast. Every command's stdout
and stderr, and the text columns of the database, are checked for credentials at teardown.
"""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_orchestrator import dump_tables

from syncctl import fleet, users
from syncctl.clock import from_iso, to_iso, utcnow
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.model import Integration, Trigger, parse_integrations
from syncctl.orchestrator import Orchestrator
from syncctl.store import open_database
from syncctl.store import users as user_store

SYNCCTL = str(Path(sys.executable).parent / "syncctl")
FAST_RETRIES = (
    "retry_max_attempts = 2\nretry_initial_wait_seconds = 0.01\nretry_max_wait_seconds = 0.05\n"
)
# Text columns an operator reads: none of them may ever hold a credential.
TEXT_COLUMNS = (
    ("sync_metrics", "error_message"),
    ("notifications", "message"),
    ("token_health", "error_message"),
    ("circuit_breaker_state", "last_failure_reason"),
)


@dataclass
class Ran:
    """One finished command."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)  # fails on anything but exactly one document


class Cli:
    """Runs `syncctl` against one database and the fake Google, remembering every output."""

    def __init__(self, tmp_path: Path, fake: FakeGoogle) -> None:
        self.fake = fake
        self.tmp_path = tmp_path
        self.db_path = tmp_path / "syncctl.db"
        config = tmp_path / "config.toml"
        config.write_text(FAST_RETRIES)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCCTL_")}
        env.update(
            SYNCCTL_DB=str(self.db_path),
            SYNCCTL_GOOGLE_ENDPOINT=fake.base_url,
            SYNCCTL_CONFIG=str(config),
            SYNCCTL_SECRET_KEY=os.environ["SYNCCTL_SECRET_KEY"],
            XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
            COLUMNS="200",
        )
        self.env = env
        self.settings = Settings(
            db_path=self.db_path,
            google_endpoint=fake.base_url,
            retry_max_attempts=2,
            retry_initial_wait_seconds=0.01,
            retry_max_wait_seconds=0.05,
        )
        self.ran: list[Ran] = []
        self.grants: list[dict[str, Any]] = []

    def __call__(self, *args: str, code: int = 0) -> Ran:
        """Run a command and check its exit code (and, with --json, its one document)."""
        process = subprocess.run(  # noqa: S603
            [SYNCCTL, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        return self._finished(args, process.returncode, process.stdout, process.stderr, code)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(  # noqa: S603
            [SYNCCTL, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self, process: subprocess.Popen[str], args: tuple[str, ...], code: int = 0) -> Ran:
        stdout, stderr = process.communicate(timeout=60)
        return self._finished(args, process.returncode, stdout, stderr, code)

    def _finished(self, args: tuple[str, ...], code: int, out: str, err: str, want: int) -> Ran:
        ran = Ran(tuple(args), code, out, err)
        self.ran.append(ran)
        assert code == want, f"syncctl {' '.join(args)} exited {code}:\n{out}\n{err}"
        if "--json" in args and out:
            ran.json()
        return ran

    def add_user(
        self, user_id: str, credentials: dict[str, Any], integrations: str | None = None
    ) -> Ran:
        """`syncctl user add` with the credentials written to a file."""
        self.grants.append(credentials)
        path = self.tmp_path / f"{user_id}-{len(self.grants)}.json"
        path.write_text(json.dumps(credentials))
        extra = ("--integrations", integrations) if integrations else ()
        return self("user", "add", user_id, "--credentials", str(path), *extra)

    def new_user(self, user_id: str, integrations: str | None = "calendar", **data: int) -> None:
        """A user at the fake, added in process (as `user add` would) to keep the tests fast."""
        data.setdefault("calendars", 1)
        data.setdefault("events_per_calendar", 2)
        credentials = self.fake.add_user(user_id, **data)
        self.grants.append(credentials)
        db = open_database(self.db_path)
        try:
            users.add_user(
                db,
                self.settings,
                user_id,
                users.parse_credentials(credentials),
                now=utcnow(),
                integrations=parse_integrations(integrations) if integrations else None,
            )
        finally:
            db.close()

    def sql(self, statement: str, *params: Any) -> list[tuple]:
        conn = sqlite3.connect(self.db_path)
        try:
            with conn:
                return conn.execute(statement, params).fetchall()
        finally:
            conn.close()

    def make_due(self, user_id: str | None = None) -> None:
        """Move pairs' next_sync_at into the past, as time passing would."""
        past = to_iso(utcnow() - timedelta(minutes=1))
        self.sql(
            "UPDATE sync_schedule SET next_sync_at = ? WHERE ? IS NULL OR user_id = ?",
            past,
            user_id,
            user_id,
        )

    def run_due_in_process(self) -> None:
        """A run-due for setting up state, without paying for a process start."""
        runner = self.orchestrator()
        try:
            assert fleet.run_due(runner) is not None
        finally:
            runner.close()

    def orchestrator(self) -> Orchestrator:
        """An in-process orchestrator on the same database, for setting up state quickly."""
        return Orchestrator(self.settings, sleep=lambda seconds: None)

    def secrets(self) -> set[str]:
        found: set[str] = set()
        for grant in self.grants:
            found.update({grant["client_secret"], grant["refresh_token"]})
        if self.db_path.exists():
            db = open_database(self.db_path)
            try:
                for (user_id,) in db.conn.execute("SELECT user_id FROM credentials"):
                    grant = user_store.load_credentials(db.conn, user_id)
                    assert grant is not None
                    values = (grant.client_secret, grant.refresh_token, grant.access_token)
                    found.update(value for value in values if value)
            finally:
                db.close()
        return found

    def leaks(self) -> list[str]:
        """Where a credential appears in any output so far or in the operator-facing columns."""
        secrets = self.secrets()
        places = [(" ".join(r.args), r.stdout + r.stderr) for r in self.ran]
        if self.db_path.exists():
            for table, column in TEXT_COLUMNS:
                for (text,) in self.sql(f"SELECT {column} FROM {table}"):  # noqa: S608
                    places.append((f"{table}.{column}", text or ""))
        return [where for where, text in places for secret in secrets if secret in text]


@pytest.fixture
def cli(tmp_path: Path, fake_google: FakeGoogle) -> Iterator[Cli]:
    runner = Cli(tmp_path, fake_google)
    yield runner
    assert runner.leaks() == []


def metrics(cli: Cli, user_id: str) -> list[tuple]:
    return cli.sql(
        "SELECT integration_type, trigger, result, skip_reason, error_class FROM sync_metrics"
        " WHERE user_id = ? ORDER BY id",
        user_id,
    )


# -- revoked grants --------------------------------------------------------------------------


def test_a_revoked_grant_is_gated_until_syncctl_user_add_reconnects_it(cli: Cli):
    cli.new_user("ann", None, contacts=2)
    cli.new_user("bob")
    cli("run-due")
    cli.fake.revoke("ann")

    skipped = cli("sync", "--user", "ann", code=4)  # discovers the revocation

    assert skipped.stdout.count("invalid_token") == 2
    assert "skipped: ann contacts: invalid_token, " in skipped.stderr
    assert "syncctl user add ann --credentials FILE" in skipped.stderr
    assert cli.sql("SELECT status FROM token_health WHERE user_id = 'ann'") == [
        ("revoked",),
        ("revoked",),
    ]
    requests = cli.fake.request_count(user_id="ann")
    cli.make_due()
    again = cli("run-due", "--json").json()
    later = cli("run-due", "--json").json()  # the skips moved ann on by the interval
    cli("sync", "--user", "ann", "--integration", "contacts", "--full", code=4)
    cli("health", "--check", "--user", "ann", code=1)

    assert sorted((a["user_id"], a["result"], a["skip_reason"]) for a in again["attempts"]) == [
        ("ann", "skipped", "invalid_token"),
        ("ann", "skipped", "invalid_token"),
        ("bob", "success", None),
    ]
    assert later["attempts"] == []
    assert cli.fake.request_count(user_id="ann") == requests
    assert cli.sql("SELECT kind, resolved_at FROM notifications") == [("reconnect_required", None)]

    cli.add_user("ann", cli.fake.reconnect("ann"))
    back = cli("run-due", "--json").json()

    assert sorted((a["user_id"], a["result"]) for a in back["attempts"]) == [
        ("ann", "success"),
        ("ann", "success"),
    ]
    assert cli.sql("SELECT DISTINCT status FROM token_health WHERE user_id = 'ann'") == [("valid",)]
    assert cli.sql("SELECT count(*) FROM notifications WHERE resolved_at IS NULL") == [(0,)]
    cli("health", "--user", "ann")


def test_health_check_stores_verdicts_and_exits_1_when_a_token_is_revoked(cli: Cli):
    cli.new_user("ann")
    cli.new_user("bob")
    cli.fake.revoke("bob")
    before = time.time()

    checked = cli("health", "--check", "--json", code=1).json()

    statuses = {(r["user_id"], r["status"]) for r in checked["token_health"]}
    assert statuses == {("ann", "valid"), ("bob", "revoked")}
    stamps = cli.sql("SELECT last_checked FROM token_health")
    assert all(from_iso(s).timestamp() >= before - 1 for (s,) in stamps)
    cli("health", code=1)
    assert cli("health", "--user", "ann", "--json").json()["token_health"][0]["status"] == "valid"
    assert cli.fake.request_count(user_id="ann", endpoint="oauth.token") == 1


# -- exit codes ------------------------------------------------------------------------------


def test_sync_exits_0_on_success_1_on_failure_and_4_with_the_reason_when_skipped(cli: Cli):
    cli.new_user("ann")
    ok = cli("sync", "--user", "ann", "--json").json()
    assert [a["result"] for a in ok["attempts"]] == ["success"]

    cli.fake.set_always_fail("ann", 503)
    failed = cli("sync", "--user", "ann", code=1)
    assert "failed: ann calendar: " in failed.stderr
    runner = cli.orchestrator()
    runner.attempt("ann", Integration.CALENDAR, Trigger.MANUAL)
    runner.attempt("ann", Integration.CALENDAR, Trigger.MANUAL)  # the third failure opens it
    runner.close()

    skipped = cli("sync", "--user", "ann", code=4)
    assert "circuit_open" in skipped.stdout
    assert "skipped: ann calendar: circuit_open, " in skipped.stderr
    assert "syncctl breaker reset --user ann" in skipped.stderr
    as_json = cli("sync", "--user", "ann", "--json", code=4).json()
    assert as_json["attempts"][0]["skip_reason"] == "circuit_open"


def test_bad_input_exits_2_with_one_line_and_changes_nothing(cli: Cli):
    cli.new_user("ann")  # calendar only
    cli.run_due_in_process()
    tables = dump_tables(cli.db_path)
    commands = [
        ("sync", "--user", "nobody"),
        ("sync", "--user", "ann", "--integration", "mail"),
        ("sync", "--user", "ann", "--integration", "contacts"),
        ("breaker", "reset", "--user", "nobody"),
    ]
    running = [(args, cli.start(*args)) for args in commands]
    results = [cli.wait(process, args, code=2) for args, process in running]

    for ran in results:
        assert ran.stdout == ""
        assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
        assert ran.stderr.startswith("syncctl: error: ")
    assert "unknown user 'nobody'" in results[0].stderr
    assert "unknown integration 'mail'" in results[1].stderr
    assert "has no contacts integration" in results[2].stderr
    assert dump_tables(cli.db_path) == tables


# -- schedule --------------------------------------------------------------------------------


def test_a_manual_sync_leaves_next_sync_at_and_the_no_change_counter_untouched(cli: Cli):
    cli.new_user("ann")
    cli.run_due_in_process()
    cli.make_due()
    cli.run_due_in_process()  # unchanged: the counter is 1
    before = cli.sql("SELECT * FROM sync_schedule")
    assert before[0][4] == 1

    cli.fake.add_event("ann", "primary", summary="Standup")
    changed = cli("sync", "--user", "ann", "--json").json()
    full = cli("sync", "--user", "ann", "--full", "--json").json()  # and one that finds nothing

    assert changed["attempts"][0]["added"] == 1
    assert [(a["sync_type"], a["added"]) for a in full["attempts"]] == [("full", 0)]
    assert cli.sql("SELECT * FROM sync_schedule") == before


def test_quota_errors_defer_the_pair_by_retry_after_without_moving_the_breaker(cli: Cli):
    cli.new_user("ann")
    cli.run_due_in_process()
    cli.make_due()
    cli.fake.fail_next(429, count=50, user_id="ann", retry_after=120)

    ran = cli("run-due", "--json", code=1).json()

    assert [(a["result"], a["error"][:25]) for a in ran["attempts"]] == [
        ("failure", "Calendar API HTTP 429: Ra")
    ]
    assert metrics(cli, "ann")[-1] == ("google_calendar", "scheduled", "failure", None, "quota")
    (next_at,) = cli.sql("SELECT next_sync_at FROM sync_schedule")[0]
    assert abs((from_iso(next_at) - utcnow()).total_seconds() - 120) < 10
    assert cli.sql("SELECT state, failure_count FROM circuit_breaker_state") == [("closed", 0)]


# -- run-due ---------------------------------------------------------------------------------


def test_two_overlapping_run_dues_sync_each_due_pair_exactly_once(cli: Cli):
    for n in range(6):
        cli.new_user(f"u{n}")
    cli.fake.set_latency(0.15)
    args = ("run-due", "--concurrency", "2", "--json")

    first, second = cli.start(*args), cli.start(*args)
    results = [cli.wait(first, args), cli.wait(second, args)]

    losers = [r for r in results if "another run-due is running" in r.stderr]
    winners = [r for r in results if r not in losers]
    assert len(losers) == 1 and len(winners) == 1
    assert losers[0].json() == {"ran": False, "reason": "another run-due is running"}
    assert len(winners[0].json()["attempts"]) == 6
    assert cli.sql(
        "SELECT user_id, integration_type, count(*) FROM sync_metrics GROUP BY 1, 2"
    ) == [(f"u{n}", "google_calendar", 1) for n in range(6)]
    for n in range(6):  # one refresh, the calendar list and one calendar's events
        assert cli.fake.request_count(user_id=f"u{n}") == 3


def test_each_attempt_writes_one_metrics_row_counting_the_requests_google_received(cli: Cli):
    cli.new_user("ann", None, contacts=3, groups=1)
    cli.new_user("bob", calendars=3)
    cli.new_user("cy")
    cli.run_due_in_process()
    cli.fake.set_always_fail("cy", 503)
    cli.fake.expire_sync_tokens("bob")
    cli.make_due()
    before = {u: cli.fake.request_count(user_id=u) for u in ("ann", "bob", "cy")}

    ran = cli("run-due", "--json", code=1).json()

    assert cli.sql("SELECT count(*) FROM sync_metrics") == [(4 + len(ran["attempts"]),)]
    for user_id in ("ann", "bob", "cy"):
        stored = cli.sql(
            "SELECT sum(api_calls_made) FROM sync_metrics WHERE user_id = ? AND id > 4", user_id
        )
        sent = cli.fake.request_count(user_id=user_id) - before[user_id]
        assert stored == [(sent,)]
        assert sent == sum(a["api_calls_made"] for a in ran["attempts"] if a["user_id"] == user_id)


def test_dry_run_changes_nothing_and_says_why_each_pair_would_run_or_be_skipped(cli: Cli):
    for user_id in ("ann", "bob", "cy", "dee"):
        cli.new_user(user_id)
    cli.run_due_in_process()
    cli.fake.revoke("bob")
    cli.fake.set_always_fail("cy", 503)
    cli.make_due()
    runner = cli.orchestrator()
    for _ in range(3):
        fleet.run_due(runner)  # bob: revoked; cy: breaker open
        cli.make_due()  # past cy's backoff
    runner.close()
    cli.new_user("eve")  # never synced: a full sync
    requests = cli.fake.request_count()
    tables = dump_tables(cli.db_path)

    plan = cli("run-due", "--dry-run", "--json").json()
    table = cli("run-due", "--dry-run")

    assert dump_tables(cli.db_path) == tables
    assert cli.fake.request_count() == requests
    assert plan["dry_run"] is True
    reasons = {row["user_id"]: (row["action"], row["reason"]) for row in plan["due"]}
    assert reasons["ann"] == ("sync", "incremental sync, scheduled due")
    assert reasons["dee"] == ("sync", "incremental sync, scheduled due")
    assert reasons["eve"] == ("sync", "full sync, scheduled due")
    assert reasons["bob"] == ("skip", "invalid_token: the grant is revoked; user must reconnect")
    assert reasons["cy"][0] == "skip"
    assert reasons["cy"][1].startswith("circuit_open: breaker open until ")
    assert "nothing changed" in table.stdout
    for user_id in reasons:
        assert user_id in table.stdout


# -- run-due under cron (SPEC 1: stdout not a terminal, no --json) ---------------------------


def on_terminal(cli: Cli, *args: str) -> Ran:
    """Run a command with stdout on a pseudo-terminal, as an operator at a shell would."""
    main, child = pty.openpty()
    process = subprocess.Popen(  # noqa: S603
        [SYNCCTL, *args], env=cli.env, stdout=child, stderr=subprocess.PIPE, text=True
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    stderr = process.stderr.read() if process.stderr else ""
    process.wait(timeout=60)
    return cli._finished(args, process.returncode, b"".join(chunks).decode(), stderr, 0)


def attempts_since(cli: Cli, row_id: int) -> list[tuple]:
    return cli.sql(
        "SELECT user_id, integration_type, result, skip_reason FROM sync_metrics WHERE id > ?"
        " ORDER BY user_id, integration_type",
        row_id,
    )


def last_row(cli: Cli) -> int:
    return cli.sql("SELECT coalesce(max(id), 0) FROM sync_metrics")[0][0]


def test_under_cron_run_due_prints_nothing_when_nothing_is_due(cli: Cli):
    cli.new_user("ann")
    cli.run_due_in_process()
    before = last_row(cli)

    quiet = cli("run-due")

    assert (quiet.stdout, quiet.stderr) == ("", "")
    assert attempts_since(cli, before) == []


def test_under_cron_run_due_prints_nothing_when_every_attempt_succeeded(cli: Cli):
    cli.new_user("ann", None, contacts=2)
    cli.new_user("bob")

    quiet = cli("run-due")

    assert (quiet.stdout, quiet.stderr) == ("", "")
    assert attempts_since(cli, 0) == [
        ("ann", "google_calendar", "success", None),
        ("ann", "google_contacts", "success", None),
        ("bob", "google_calendar", "success", None),
    ]


def test_under_cron_a_failure_prints_one_summary_line_and_one_line_per_failed_pair(cli: Cli):
    cli.new_user("ann")
    cli.new_user("bob")
    cli.new_user("cy", None, contacts=1)
    cli.run_due_in_process()
    cli.fake.set_always_fail("cy", 503)
    cli.make_due()
    before = last_row(cli)

    failed = cli("run-due", code=1)

    errors = dict(
        cli.sql(
            "SELECT integration_type, error_message FROM sync_metrics WHERE id > ? AND user_id"
            " = 'cy'",
            before,
        )
    )
    assert failed.stdout == ""
    assert failed.stderr.splitlines() == [
        "syncctl run-due: 4 attempts, 2 succeeded, 2 failed, 0 skipped",
        f"failed: cy calendar: {errors['google_calendar']}",
        f"failed: cy contacts: {errors['google_contacts']}",
    ]
    assert errors["google_calendar"].startswith("Calendar API HTTP 503")


def test_under_cron_a_newly_revoked_grant_is_reported_once_then_its_skips_are_silent(cli: Cli):
    cli.new_user("ann", None, contacts=2)
    cli.new_user("bob")
    cli.run_due_in_process()
    cli.fake.revoke("ann")
    cli.make_due()
    before = last_row(cli)

    found = cli("run-due")  # a revoked grant is a skip, not a failure: exit 0

    assert found.stdout == ""
    assert found.stderr.splitlines() == [
        "syncctl run-due: 3 attempts, 1 succeeded, 0 failed, 2 skipped; 1 grant(s) newly revoked",
        "revoked: ann: the Google grant has been revoked or has expired (invalid_grant); the user"
        " must reconnect (run `syncctl user add ann --credentials FILE`)",
    ]
    cli.make_due()
    before = last_row(cli)

    later = cli("run-due")

    assert (later.stdout, later.stderr) == ("", "")
    assert attempts_since(cli, before) == [
        ("ann", "google_calendar", "skipped", "invalid_token"),
        ("ann", "google_contacts", "skipped", "invalid_token"),
        ("bob", "google_calendar", "success", None),
    ]


def test_under_cron_skips_by_an_open_breaker_are_silent(cli: Cli):
    cli.new_user("ann")
    cli.fake.set_always_fail("ann", 503)
    runner = cli.orchestrator()
    for _ in range(3):  # three failures, each reported by its own run, open the breaker
        runner.attempt("ann", Integration.CALENDAR, Trigger.MANUAL)
    runner.close()
    cli.make_due()
    before = last_row(cli)

    quiet = cli("run-due")

    assert (quiet.stdout, quiet.stderr) == ("", "")
    assert attempts_since(cli, before) == [("ann", "google_calendar", "skipped", "circuit_open")]


def test_run_due_prints_the_attempt_table_on_a_terminal_or_with_verbose(cli: Cli):
    cli.new_user("ann")
    cli.new_user("bob")

    shown = on_terminal(cli, "run-due")
    cli.make_due()
    logged = cli("run-due", "--verbose")

    for ran in (shown, logged):
        assert "run-due" in ran.stdout and "attempts: 2, success: 2" in ran.stdout
        assert "ann" in ran.stdout and "bob" in ran.stdout
    assert "\x1b[" not in logged.stdout  # no colour codes in a log


# -- breakers --------------------------------------------------------------------------------


def test_breaker_list_shows_an_open_breaker_and_reset_closes_it(cli: Cli):
    cli.new_user("ann", None)
    cli.new_user("bob")
    cli.fake.set_always_fail("ann", 503)
    runner = cli.orchestrator()
    for _ in range(3):
        runner.attempt("ann", Integration.CALENDAR, Trigger.MANUAL)
    runner.close()

    listed = cli("breaker", "list", "--json").json()
    rows = [(r["user_id"], r["integration_type"], r["state"]) for r in listed["breakers"]]
    assert rows == [("ann", "calendar", "open")]
    assert listed["breakers"][0]["failure_count"] == 3
    assert listed["closed_without_failures_not_listed"] == 2
    table = cli("breaker", "list").stdout
    assert "open" in table and "2 closed without failures not listed" in table

    cli.fake.heal("ann")
    reset = cli("breaker", "reset", "--user", "ann", "--integration", "calendar")
    assert "closed 1 breaker(s) of ann" in reset.stdout
    every = cli("breaker", "list", "--all", "--json").json()
    rows = [(r["user_id"], r["state"], r["failure_count"]) for r in every["breakers"]]
    assert rows == [("ann", "closed", 0), ("ann", "closed", 0), ("bob", "closed", 0)]
    assert {r["next_retry_at"] for r in every["breakers"]} == {None}
    assert every["closed_without_failures_not_listed"] == 0
    cli("sync", "--user", "ann", "--integration", "calendar")


def test_breaker_list_shows_the_fleet_breakers_and_reset_fleet_closes_them(cli: Cli):
    cli.new_user("ann")
    cli.sql(
        "INSERT INTO fleet_breaker (api, state, window_started_at, attempts, transient_failures,"
        " opened_at, last_failure_reason) VALUES ('oauth', 'open', ?, 20, 20, ?, 'transient')",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:05:00Z",
    )

    listed = cli("breaker", "list", "--json").json()
    states = {f["api"]: (f["state"], f["attempts"]) for f in listed["fleet"]}
    assert states == {"oauth": ("open", 20), "people": ("closed", 0), "calendar": ("closed", 0)}
    assert "Google OAuth" in cli("breaker", "list").stdout
    report = cli("report", "--json").json()
    assert [f["state"] for f in report["breakers"]["fleet"]] == ["open", "closed", "closed"]
    assert (
        'syncctl_fleet_breaker_open{api="oauth"} 1'
        in cli("report", "--format", "prometheus").stdout
    )

    reset = cli("breaker", "reset", "--fleet")

    assert "closed 1 open fleet breaker(s)" in reset.stdout
    listed = cli("breaker", "list", "--json").json()
    assert {(f["state"], f["attempts"]) for f in listed["fleet"]} == {("closed", 0)}
    bad = cli("breaker", "reset", "--fleet", "--user", "ann", code=2)
    assert "give one of --user X, --all or --fleet" in bad.stderr


# -- credentials -----------------------------------------------------------------------------


def test_no_credential_appears_in_any_output_or_operator_column(cli: Cli):
    cli.new_user("ann", None, contacts=2)
    cli.new_user("bob")
    cli.new_user("cy")
    cli.run_due_in_process()
    cli.fake.revoke("ann")
    cli.fake.set_always_fail("bob", 500)
    cli.fake.fail_next(429, count=10, user_id="cy", retry_after=300)
    cli.fake.expire_access_tokens("cy")
    cli.make_due()
    cli("run-due", code=1)
    cli("sync", "--user", "bob", "--json", code=1)
    cli("health", "--check", code=1)

    assert len(cli.secrets()) >= 7  # a client secret, three refresh and three access tokens
    assert {m[4] for u in ("ann", "bob", "cy") for m in metrics(cli, u)} >= {
        "auth",
        "transient",
        "quota",
    }
    assert cli.leaks() == []
