"""The receiver end to end: `syncctl webhook serve` as its own process, the fake Google posting
its notifications to it over loopback, and SQLite read back through a fresh connection.

The receiver runs the notified syncs itself; no run-due runs in these tests. Waiting is by
polling SQLite for a bounded time (these are latency tests: the contract's bound is 10 s).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from syncctl import fleet as fleet_loops
from syncctl.clock import from_iso
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.leases import new_holder, take_lease
from syncctl.model import Integration, Trigger
from syncctl.orchestrator import Orchestrator
from syncctl.receiver import Dispatcher, PairBusyError
from syncctl.store import open_database
from syncctl.users import add_user, parse_credentials

USER = "erin"
CAL = Integration.CALENDAR
EVENTS_LIST = "calendar.events.list"
CALENDAR_LIST = "calendar.calendarList.list"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float) -> Any:
    """Poll `condition` every 20 ms until it is truthy or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.02)


def query(db_path: Path, sql: str, *params: Any) -> list[tuple]:
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@dataclass
class Fleet:
    """A fake Google, a database with one calendar user synced once, and the receiver's env."""

    fake: FakeGoogle
    db_path: Path
    port: int
    env: dict[str, str]
    settings: Settings
    lines: list[str] = field(default_factory=list)

    @property
    def calendar_id(self) -> str:
        return sorted(self.fake.calendars(USER))[0]

    def event_ids(self) -> set[str]:
        rows = query(self.db_path, "SELECT event_id FROM calendar_events WHERE user_id = ?", USER)
        return {event_id for (event_id,) in rows}

    def pending(self) -> str | None:
        rows = query(
            self.db_path,
            "SELECT pending_trigger FROM sync_schedule WHERE user_id = ? AND integration_type = ?",
            USER,
            CAL.value,
        )
        return rows[0][0]

    def leases(self) -> list[tuple]:
        return query(self.db_path, "SELECT user_id, integration_type, holder FROM sync_leases")

    @contextmanager
    def receiver(self) -> Iterator[subprocess.Popen]:
        """`syncctl webhook serve` on the fleet's port, until terminated (or killed)."""
        command = [sys.executable, "-m", "syncctl", "--db", str(self.db_path), "webhook", "serve"]
        process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        first = process.stderr.readline()
        assert first.startswith(f"webhook receiver listening at http://127.0.0.1:{self.port}")
        reader = threading.Thread(target=self._drain, args=(process,), daemon=True)
        reader.start()
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            reader.join(timeout=5)

    def _drain(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.lines.append(line.rstrip("\n"))


def write_config(path: Path, **values: Any) -> Path:
    path.write_text("".join(f"{key} = {value!r}\n" for key, value in values.items()))
    return path


@pytest.fixture
def fleet(tmp_path: Path, fake_google: FakeGoogle) -> Fleet:
    return make_fleet(tmp_path, fake_google)


def make_fleet(tmp_path: Path, fake: FakeGoogle, **config: Any) -> Fleet:
    port = free_port()
    db_path = tmp_path / "syncctl.db"
    url = f"http://127.0.0.1:{port}/calendar-push"
    config_path = write_config(tmp_path / "config.toml", **config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCCTL_")}
    env["SYNCCTL_SECRET_KEY"] = os.environ["SYNCCTL_SECRET_KEY"]  # conftest: one key per run
    env |= {
        "SYNCCTL_GOOGLE_ENDPOINT": fake.base_url,
        "SYNCCTL_WEBHOOK_URL": url,
        "SYNCCTL_CONFIG": str(config_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    settings = Settings(db_path=db_path, google_endpoint=fake.base_url, webhook_url=url)
    info = fake.add_user(USER, calendars=1, events_per_calendar=3)
    db = open_database(db_path)
    try:
        add_user(db, settings, USER, parse_credentials(info), integrations=[CAL], now=fake_now())
    finally:
        db.close()
    runner = Orchestrator(settings)
    try:  # the first sync mirrors the calendar and opens its watch channel
        record = runner.attempt(USER, CAL, Trigger.MANUAL)
    finally:
        runner.close()
    assert record.result.value == "success"
    assert fake.flush_notifications()  # the channel's `sync` message (nobody listens yet)
    return Fleet(fake, db_path, port, env, settings)


def fake_now():
    from syncctl.clock import utcnow

    return utcnow()


def test_a_change_is_in_sqlite_within_10_seconds_of_its_notification_with_no_run_due(fleet):
    with fleet.receiver():
        fleet.fake.reset_counts()
        started = time.monotonic()
        event_id = fleet.fake.add_event(USER, fleet.calendar_id, summary="Dentist")

        arrived = wait_until(lambda: event_id in fleet.event_ids(), timeout=10)
        elapsed = time.monotonic() - started

    assert arrived, f"not in SQLite after {elapsed:.1f} s; receiver said {fleet.lines}"
    assert elapsed < 10
    assert fleet.fake.request_count(USER, CALENDAR_LIST) == 0  # a notified sync lists no list
    assert fleet.fake.request_count(USER, EVENTS_LIST) == 1
    # The access token the first (manual, other-process) sync stored is still valid: reused.
    assert fleet.fake.request_count(USER, "oauth.token") == 0
    assert fleet.fake.request_count(USER) == 1
    rows = query(fleet.db_path, "SELECT trigger, result FROM sync_metrics ORDER BY id")
    assert rows[-1] == ("webhook", "success")
    assert fleet.pending() is None and fleet.leases() == []
    assert any(line.startswith(f"webhook sync {USER} [") for line in fleet.lines)
    # The safety poll stays due one interval after the calendar list's last listing.
    ((listed, interval, next_at),) = query(
        fleet.db_path,
        "SELECT t.updated_at, s.current_frequency_seconds, s.next_sync_at FROM sync_tokens t"
        " JOIN sync_schedule s USING (user_id, integration_type) WHERE t.scope = 'calendar_list'",
    )
    assert from_iso(next_at) == from_iso(listed) + timedelta(seconds=interval)


def test_thirty_notifications_in_one_second_cause_at_most_three_event_listings(fleet):
    with fleet.receiver():
        fleet.fake.reset_counts()
        started = time.monotonic()
        added = set()
        for n in range(30):
            added.add(fleet.fake.add_event(USER, fleet.calendar_id, summary=f"Burst {n}"))
            time.sleep(max(0.0, started + (n + 1) / 31 - time.monotonic()))
        # Within the second on an idle machine; a loaded one may take longer, and the claim
        # must still hold as long as the burst fits the 2-second coalescing window.
        assert time.monotonic() - started < 2.0
        assert fleet.fake.flush_notifications(timeout=30)

        done = wait_until(lambda: added <= fleet.event_ids() and fleet.pending() is None, 15)

    assert done, fleet.lines
    sent = [n for n in fleet.fake.wait_for_notifications(0) if n.resource_state == "exists"]
    assert len(sent) >= 30 and all(n.status == 200 for n in sent[-30:])
    assert 1 <= fleet.fake.request_count(USER, EVENTS_LIST) <= 3
    assert fleet.fake.request_count(USER, CALENDAR_LIST) == 0


def test_a_revoked_users_notification_sends_nothing_to_google(tmp_path, fake_google):
    fleet = make_fleet(tmp_path, fake_google, webhook_coalesce_seconds=0.3)
    query(fleet.db_path, "SELECT 1")
    conn = sqlite3.connect(fleet.db_path)
    with conn:
        conn.execute("UPDATE token_health SET status = 'revoked' WHERE user_id = ?", [USER])
    conn.close()
    metrics_before = query(fleet.db_path, "SELECT count(*) FROM sync_metrics")
    with fleet.receiver():
        fleet.fake.reset_counts()
        fleet.fake.add_event(USER, fleet.calendar_id, summary="Ignored")
        assert fleet.fake.flush_notifications(timeout=10)
        time.sleep(1.0)  # three coalescing windows: any dispatched sync would have started

    assert fleet.fake.request_count() == 0
    assert [n.status for n in fleet.fake.wait_for_notifications(0)][-1] == 200
    assert query(fleet.db_path, "SELECT count(*) FROM sync_metrics") == metrics_before
    assert any("revoked; ignored" in line for line in fleet.lines)


def test_a_receiver_killed_mid_sync_and_restarted_loses_nothing_and_leaves_no_lease(
    tmp_path, fake_google
):
    fleet = make_fleet(tmp_path, fake_google, webhook_coalesce_seconds=0.2)
    with fleet.receiver() as process:
        fleet.fake.set_latency(3.0)  # the notified sync is still listing events when killed
        event_id = fleet.fake.add_event(USER, fleet.calendar_id, summary="Survives")
        assert wait_until(fleet.leases, timeout=10), fleet.lines
        process.kill()
        process.wait(timeout=10)
    assert event_id not in fleet.event_ids()
    assert fleet.pending() == "webhook"  # the notification is still on record
    assert len(fleet.leases()) == 1  # the dead receiver's lease is left behind
    fleet.fake.set_latency(0)

    with fleet.receiver():
        arrived = wait_until(lambda: event_id in fleet.event_ids(), timeout=10)
        settled = wait_until(lambda: fleet.pending() is None and not fleet.leases(), 10)

    assert arrived and settled, fleet.lines
    assert query(
        fleet.db_path, "SELECT count(*) FROM calendar_events WHERE event_id = ?", event_id
    ) == [(1,)]


def test_a_manual_sync_of_a_pair_another_process_holds_exits_4_and_changes_nothing(fleet):
    db = open_database(fleet.db_path)
    try:
        holder = new_holder()  # this test process: alive, so the lease holds
        assert take_lease(
            db, USER, CAL, holder=holder, now=fake_now(), settings=fleet.settings
        ).granted
    finally:
        db.close()
    before = query(fleet.db_path, "SELECT count(*) FROM sync_metrics")

    result = subprocess.run(
        [sys.executable, "-m", "syncctl", "--db", str(fleet.db_path), "sync", "--user", USER],
        capture_output=True,
        text=True,
        env=fleet.env,
        timeout=60,
    )

    assert result.returncode == 4
    assert f"{USER} calendar is being synced by" in result.stderr
    assert query(fleet.db_path, "SELECT count(*) FROM sync_metrics") == before


def test_run_due_leaves_a_pair_another_process_holds_due_and_writes_no_row(fleet):
    db = open_database(fleet.db_path)
    try:
        db.conn.execute("UPDATE sync_schedule SET next_sync_at = '2000-01-01T00:00:00+00:00'")
        take_lease(db, USER, CAL, holder=new_holder(), now=fake_now(), settings=fleet.settings)
    finally:
        db.close()
    before = query(fleet.db_path, "SELECT count(*) FROM sync_metrics")
    runner = Orchestrator(fleet.settings)
    try:
        summary = fleet_loops.run_due(runner)
    finally:
        runner.close()

    assert summary is not None and summary.attempts == []
    assert query(fleet.db_path, "SELECT count(*) FROM sync_metrics") == before
    assert query(fleet.db_path, "SELECT next_sync_at FROM sync_schedule") == [
        ("2000-01-01T00:00:00+00:00",)
    ]


# -- the dispatcher on its own ------------------------------------------------------------------


class Recorder:
    """A dispatch run that records its calls and can be made to block or report a busy pair."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[str] | None]] = []
        self.release = threading.Event()
        self.release.set()
        self.busy_times = 0
        self.running = threading.Event()

    def __call__(self, user_id: str, calendars: frozenset[str] | None) -> None:
        self.running.set()
        self.release.wait(5)
        if self.busy_times:
            self.busy_times -= 1
            raise PairBusyError("held elsewhere")
        self.calls.append((user_id, calendars))


def dispatcher(run: Recorder, **kwargs: Any) -> Dispatcher:
    return Dispatcher(run, window=0.05, workers=2, log_line=lambda _: None, **kwargs)


def test_notifications_for_one_user_within_the_window_become_one_sync():
    run = Recorder()
    d = dispatcher(run)
    try:
        for calendar_id in ["a", "b", "a", "a"]:
            d.notify("u1", calendar_id)
        d.notify("u2", "c")
        assert d.wait_idle(5)
    finally:
        d.stop()
    assert sorted(run.calls) == [("u1", frozenset({"a", "b"})), ("u2", frozenset({"c"}))]


def test_a_notification_during_a_users_sync_queues_one_more_sync_after_it():
    run = Recorder()
    run.release.clear()
    d = dispatcher(run)
    try:
        d.notify("u1", "a")
        assert run.running.wait(5)
        d.notify("u1", "b")
        d.notify("u1", "b")
        time.sleep(0.15)  # past the window: still not run beside the first
        assert run.calls == []
        run.release.set()
        assert d.wait_idle(5)
    finally:
        d.stop()
    assert run.calls == [("u1", frozenset({"a"})), ("u1", frozenset({"b"}))]


def test_a_busy_pair_is_retried_then_synced():
    run = Recorder()
    run.busy_times = 2
    d = dispatcher(run, busy_retry_seconds=0.01)
    try:
        d.notify("u1", "a")
        assert d.wait_idle(5)
    finally:
        d.stop()
    assert run.calls == [("u1", frozenset({"a"}))]


def test_a_recovered_notification_syncs_every_calendar():
    run = Recorder()
    d = dispatcher(run)
    try:
        d.notify("u1", "a")
        d.notify("u1", None)
        d.notify("u1", "b")
        assert d.wait_idle(5)
    finally:
        d.stop()
    assert run.calls == [("u1", None)]
