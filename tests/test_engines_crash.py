"""A sync process SIGKILLed at any moment loses and duplicates nothing; the rerun is exact.

Each test runs the engine in a subprocess against the fixture's fake Google (slowed down with
injected latency so that pages are far apart), polls the database until the moment it wants,
kills the process with SIGKILL, reruns the sync to completion and compares the database with
the fake's ground truth.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.engines import SyncOutcome
from syncctl.engines.calendar import calendar_row, event_row, sync_calendar
from syncctl.engines.contacts import contact_row, sync_contacts
from syncctl.fakegoogle import FakeGoogle
from syncctl.google import GoogleSession
from syncctl.model import Integration, SyncType, UserCredentials
from syncctl.store import open_database
from syncctl.store.calendar import load_calendars, load_events
from syncctl.store.contacts import load_contacts
from syncctl.store.sync_tokens import load_sync_token

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

USER = "dave"
LATENCY = 0.25
# The child reads its job from stdin, so no credential appears on a command line.
CHILD = """
import json, sys
from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.engines.calendar import sync_calendar
from syncctl.engines.contacts import sync_contacts
from syncctl.google import GoogleSession
from syncctl.model import UserCredentials
from syncctl.store import open_database

job = json.load(sys.stdin)
info = job["credentials"]
credentials = UserCredentials(
    client_id=info["client_id"], client_secret=info["client_secret"],
    refresh_token=info["refresh_token"], scopes=tuple(info["scopes"]),
)
engine = sync_contacts if job["engine"] == "contacts" else sync_calendar
db = open_database(job["db"])
with GoogleSession(credentials, Settings(google_endpoint=job["base_url"]), now=utcnow) as session:
    engine(db, session, job["user"], full=job["full"], now=utcnow)
print("finished")
"""


def session_for(fake: FakeGoogle, info: dict[str, Any]) -> GoogleSession:
    credentials = UserCredentials(
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        refresh_token=info["refresh_token"],
        scopes=tuple(info.get("scopes") or ()),
    )
    return GoogleSession(credentials, Settings(google_endpoint=fake.base_url), now=utcnow)


def run_in_process(fake: FakeGoogle, db_path: Path, info: dict[str, Any], engine: str):
    db = open_database(db_path)
    try:
        with session_for(fake, info) as session:
            sync = sync_contacts if engine == "contacts" else sync_calendar
            return sync(db, session, USER, full=False, now=utcnow)
    finally:
        db.close()


def kill_when(
    fake: FakeGoogle,
    db_path: Path,
    info: dict[str, Any],
    engine: str,
    ready: Callable[[sqlite3.Connection], bool],
    *,
    full: bool = False,
    timeout: float = 30.0,
) -> None:
    """Run a sync in a subprocess and SIGKILL it as soon as `ready(db)` holds."""
    open_database(db_path).close()  # created by syncctl (mode 0600), not by the watcher below
    job = {
        "credentials": info,
        "engine": engine,
        "db": str(db_path),
        "base_url": fake.base_url,
        "user": USER,
        "full": full,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None
    child.stdin.write(json.dumps(job).encode())
    child.stdin.close()
    watcher = sqlite3.connect(db_path, timeout=0)  # never waits for the child's locks
    try:
        deadline = time.monotonic() + timeout
        while not ready(watcher):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the sync never reached the kill point"
            time.sleep(0.0005)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        watcher.close()
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL, "the sync finished before it could be killed"


def count(conn: sqlite3.Connection, sql: str, *params: Any) -> int:
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    except sqlite3.OperationalError:  # the child has not created the schema yet
        return 0


def contacts_exact(fake: FakeGoogle, db_path: Path) -> None:
    db = open_database(db_path)
    try:
        truth = {name: contact_row(person) for name, person in fake.contacts(USER).items()}
        assert load_contacts(db.conn, USER) == truth
        rows = db.conn.execute("SELECT count(*) FROM contacts WHERE user_id = ?", [USER])
        assert rows.fetchone()[0] == len(truth)
        assert load_sync_token(db.conn, USER, Integration.CONTACTS, "connections")
    finally:
        db.close()


def calendar_exact(fake: FakeGoogle, db_path: Path) -> None:
    db = open_database(db_path)
    try:
        truth = {cid: calendar_row(entry) for cid, entry in fake.calendars(USER).items()}
        assert load_calendars(db.conn, USER) == truth
        for calendar_id in truth:
            events = {eid: event_row(e) for eid, e in fake.events(USER, calendar_id).items()}
            assert load_events(db.conn, USER, calendar_id) == events
        total = sum(len(fake.events(USER, c)) for c in truth)
        rows = db.conn.execute("SELECT count(*) FROM calendar_events WHERE user_id = ?", [USER])
        assert rows.fetchone()[0] == total
    finally:
        db.close()


def test_first_contact_sync_killed_between_pages_is_finished_exactly_by_the_rerun(
    fake_google, tmp_path
):
    info = fake_google.add_user(USER, contacts=2500)
    db_path = tmp_path / "syncctl.db"
    fake_google.set_latency(LATENCY)

    kill_when(
        fake_google,
        db_path,
        info,
        "contacts",
        lambda c: count(c, "SELECT count(*) FROM contacts") >= 1000,
    )

    with sqlite3.connect(db_path) as conn:
        assert count(conn, "SELECT count(*) FROM contacts") == 1000  # page 1, committed alone
        assert count(conn, "SELECT count(*) FROM sync_tokens") == 0
    fake_google.set_latency(0)
    fake_google.add_contact(USER, name="Arrived Meanwhile")
    outcome = run_in_process(fake_google, db_path, info, "contacts")
    assert outcome.sync_type is SyncType.FULL
    groups = len(fake_google.groups(USER))  # the system groups, synced after the people
    assert (outcome.added, outcome.updated, outcome.deleted) == (1501 + groups, 0, 0)
    contacts_exact(fake_google, db_path)


def change_people(fake: FakeGoogle) -> None:
    """Deletions, updates, a relink and additions spread over the whole listing."""
    people = list(fake.contacts(USER))  # oldest change first: the first page's people lead
    for name in (people[5], people[1500], people[2400]):
        fake.delete_contact(USER, name)
    fake.update_contact(USER, people[10], phone="+1 555-0199")
    fake.relink_contact(USER, people[20])
    for i in range(3):
        fake.add_contact(USER, name=f"Newcomer {i}")


def test_a_full_resync_killed_midway_keeps_the_old_token_and_the_rerun_is_exact(
    fake_google, tmp_path
):
    info = fake_google.add_user(USER, contacts=2500)
    db_path = tmp_path / "syncctl.db"
    run_in_process(fake_google, db_path, info, "contacts")
    change_people(fake_google)
    fake_google.set_latency(LATENCY)

    # generation 1 was the first full sync; the resync writes generation 2 page by page
    kill_when(
        fake_google,
        db_path,
        info,
        "contacts",
        lambda c: count(c, "SELECT count(*) FROM contacts WHERE sync_generation = 2") > 0,
        full=True,
    )

    fake_google.set_latency(0)
    outcome = run_in_process(fake_google, db_path, info, "contacts")
    assert outcome.sync_type is SyncType.INCREMENTAL  # resumed from the token kept
    contacts_exact(fake_google, db_path)


def test_a_fallback_full_sync_killed_midway_is_redone_in_full_by_the_rerun(fake_google, tmp_path):
    info = fake_google.add_user(USER, contacts=2500)
    db_path = tmp_path / "syncctl.db"
    run_in_process(fake_google, db_path, info, "contacts")
    change_people(fake_google)
    fake_google.expire_sync_tokens(USER)
    fake_google.set_latency(LATENCY)

    kill_when(
        fake_google,
        db_path,
        info,
        "contacts",
        lambda c: count(c, "SELECT count(*) FROM contacts WHERE sync_generation = 2") > 0,
    )

    with sqlite3.connect(db_path) as conn:
        assert count(conn, "SELECT count(*) FROM sync_tokens WHERE scope = 'connections'") == 0
    fake_google.set_latency(0)
    outcome = run_in_process(fake_google, db_path, info, "contacts")
    assert outcome.sync_type is SyncType.FULL
    contacts_exact(fake_google, db_path)


def test_a_calendar_sync_killed_after_its_first_calendar_is_finished_exactly_by_the_rerun(
    fake_google, tmp_path
):
    info = fake_google.add_user(USER, calendars=3, events_per_calendar=200)
    db_path = tmp_path / "syncctl.db"
    fake_google.set_latency(LATENCY)

    kill_when(
        fake_google,
        db_path,
        info,
        "calendar",
        lambda c: count(c, "SELECT count(*) FROM sync_tokens WHERE scope LIKE 'events:%'") >= 1,
    )

    with sqlite3.connect(db_path) as conn:
        assert count(conn, "SELECT count(*) FROM calendar_events") == 200
    fake_google.set_latency(0)
    first = sorted(fake_google.calendars(USER))[0]
    fake_google.delete_event(USER, first, sorted(fake_google.events(USER, first))[0])
    run_in_process(fake_google, db_path, info, "calendar")
    calendar_exact(fake_google, db_path)


def writing(conn: sqlite3.Connection) -> bool:
    """Whether another connection holds the write lock (is inside a transaction that writes)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return True
    conn.execute("ROLLBACK")
    return False


@pytest.mark.parametrize(
    ("committed", "page"), [(0, "the first page"), (2000, "the last page, token and sweep")]
)
def test_a_sync_killed_inside_a_page_transaction_loses_that_page_and_nothing_else(
    fake_google, tmp_path, committed, page
):
    info = fake_google.add_user(USER, contacts=2500)
    db_path = tmp_path / "syncctl.db"
    run_in_process(fake_google, db_path, info, "contacts")
    change_people(fake_google)
    fake_google.set_latency(0.05)
    resynced = "SELECT count(*) FROM contacts WHERE sync_generation = 2"

    def inside_the_page_transaction(conn: sqlite3.Connection) -> bool:
        return count(conn, resynced) >= committed and writing(conn)

    kill_when(fake_google, db_path, info, "contacts", inside_the_page_transaction, full=True)

    with sqlite3.connect(db_path) as conn:
        assert count(conn, resynced) == committed, f"{page} was rolled back"
    fake_google.set_latency(0)
    run_in_process(fake_google, db_path, info, "contacts")
    contacts_exact(fake_google, db_path)


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.35])
def test_a_contact_sync_killed_at_any_moment_leaves_a_database_the_rerun_makes_exact(
    fake_google, tmp_path, delay
):
    # Delays count from the first page committed; the last of four requests ends 0.6 s later.
    info = fake_google.add_user(USER, contacts=2500)
    db_path = tmp_path / "syncctl.db"
    run_in_process(fake_google, db_path, info, "contacts")
    change_people(fake_google)
    fake_google.set_latency(0.2)
    started: list[float] = []

    def ready(conn: sqlite3.Connection) -> bool:
        if not started and count(conn, "SELECT max(sync_generation) FROM contacts") == 2:
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] >= delay

    kill_when(fake_google, db_path, info, "contacts", ready, full=True)

    fake_google.set_latency(0)
    run_in_process(fake_google, db_path, info, "contacts")
    contacts_exact(fake_google, db_path)
    assert isinstance(run_in_process(fake_google, db_path, info, "contacts"), SyncOutcome)
