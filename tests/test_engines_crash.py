"""A sync process SIGKILLed at any moment loses and duplicates nothing; the rerun is exact.

Each test runs `syncctl sync --user dave` in a subprocess against the fixture's fake Google
(slowed down with injected latency so that pages are far apart), polls the database until the
moment it wants, kills the process with SIGKILL, reruns the command to completion and compares
the database with the fake's ground truth.
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
from subprocess import Popen
from typing import Any

import pytest

from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.engines.calendar import calendar_row, event_row
from syncctl.engines.contacts import contact_row, group_row, sync_contacts
from syncctl.fakegoogle import FakeGoogle
from syncctl.google import GoogleSession
from syncctl.model import Integration
from syncctl.store import open_database
from syncctl.store.calendar import load_calendars, load_events
from syncctl.store.contacts import load_contacts, load_groups
from syncctl.store.sync_tokens import load_sync_token
from syncctl.users import add_user, parse_credentials

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

USER = "dave"
LATENCY = 0.15
PEOPLE = 2100  # three pages of at most 1000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "syncctl.db"


def enroll(fake: FakeGoogle, db_path: Path, **data: int) -> dict[str, Any]:
    """Create the account at the fake and add the user to syncctl (as `user add` does)."""
    info = fake.add_user(USER, **data)
    db = open_database(db_path)
    try:
        add_user(db, Settings(), USER, parse_credentials(info), now=utcnow())
    finally:
        db.close()
    return info


def sync_command(fake: FakeGoogle, db_path: Path, integration: str, *, full: bool) -> Popen:
    """Start `syncctl sync --user USER` against the fake, as an operator would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCCTL_")}
    env.update(SYNCCTL_GOOGLE_ENDPOINT=fake.base_url, SYNCCTL_CONFIG=os.devnull)
    command = [sys.executable, "-m", "syncctl", "--db", str(db_path), "sync", "--user", USER]
    command += ["--integration", integration, "--json", *(["--full"] if full else [])]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def rerun(fake: FakeGoogle, db_path: Path, integration: str) -> dict[str, Any]:
    """Run `syncctl sync` to completion and return its attempt (it must succeed)."""
    child = sync_command(fake, db_path, integration, full=False)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, (out + err).decode()
    attempt: dict[str, Any] = json.loads(out)["attempts"][0]
    assert attempt["result"] == "success", attempt
    return attempt


def kill_when(
    fake: FakeGoogle,
    db_path: Path,
    integration: str,
    ready: Callable[[sqlite3.Connection], bool],
    *,
    full: bool = False,
    timeout: float = 30.0,
    must_kill: bool = True,
) -> bool:
    """Run `syncctl sync` in a subprocess and SIGKILL it as soon as `ready(db)` holds.

    Returns whether it was killed; with `must_kill=False` a sync that finished before the kill
    point was seen (a short window on a busy machine) returns False instead of failing.
    """
    child = sync_command(fake, db_path, integration, full=full)
    watcher = sqlite3.connect(db_path, timeout=0)  # never waits for the child's locks
    try:
        deadline = time.monotonic() + timeout
        while not ready(watcher):
            if child.poll() is not None:
                assert child.returncode == 0, child.stderr.read().decode() if child.stderr else ""
                assert not must_kill, "the sync finished before it could be killed"
                return False
            assert time.monotonic() < deadline, "the sync never reached the kill point"
            time.sleep(0.0002)
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
    return True


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
    fake_google, db_path
):
    enroll(fake_google, db_path, contacts=PEOPLE)
    fake_google.set_latency(LATENCY)

    kill_when(
        fake_google,
        db_path,
        "contacts",
        lambda c: count(c, "SELECT count(*) FROM contacts") >= 1000,
    )

    with sqlite3.connect(db_path) as conn:
        assert count(conn, "SELECT count(*) FROM contacts") == 1000  # page 1, committed alone
        assert count(conn, "SELECT count(*) FROM sync_tokens") == 0
    fake_google.set_latency(0)
    fake_google.add_contact(USER, name="Arrived Meanwhile")
    attempt = rerun(fake_google, db_path, "contacts")
    assert attempt["sync_type"] == "full"
    rest = PEOPLE - 1000 + 1 + len(fake_google.groups(USER))  # groups come after the people
    assert (attempt["added"], attempt["updated"], attempt["deleted"]) == (rest, 0, 0)
    contacts_exact(fake_google, db_path)


def change_people(fake: FakeGoogle) -> None:
    """Deletions, updates, a relink and additions spread over the whole listing."""
    people = list(fake.contacts(USER))  # oldest change first: the first page's people lead
    for name in (people[5], people[1500], people[2050]):
        fake.delete_contact(USER, name)
    fake.update_contact(USER, people[10], phone="+1 555-0199")
    fake.relink_contact(USER, people[20])
    for i in range(3):
        fake.add_contact(USER, name=f"Newcomer {i}")


def synced_account(fake: FakeGoogle, db_path: Path, people: int = PEOPLE) -> None:
    """A mirrored account (generation 1) whose data then changed at Google."""
    info = enroll(fake, db_path, contacts=people)
    credentials = parse_credentials(info)
    db = open_database(db_path)
    try:  # in-process: this first sync is the setting, not the subject
        with GoogleSession(credentials, Settings(google_endpoint=fake.base_url)) as session:
            sync_contacts(db, session, USER, now=utcnow)
    finally:
        db.close()
    change_people(fake)


MARKED = "SELECT count(*) FROM contacts WHERE sync_generation = ?"
RESYNCED = "SELECT count(*) FROM contacts WHERE sync_generation = 2"


def test_a_full_resync_killed_midway_keeps_the_old_token_and_the_rerun_is_exact(
    fake_google, db_path
):
    synced_account(fake_google, db_path)
    fake_google.set_latency(LATENCY)

    kill_when(fake_google, db_path, "contacts", lambda c: count(c, RESYNCED) > 0, full=True)

    fake_google.set_latency(0)
    attempt = rerun(fake_google, db_path, "contacts")
    assert attempt["sync_type"] == "incremental"  # resumed from the token kept
    contacts_exact(fake_google, db_path)


def test_a_fallback_full_sync_killed_midway_is_redone_in_full_by_the_rerun(fake_google, db_path):
    synced_account(fake_google, db_path)
    fake_google.expire_sync_tokens(USER)
    fake_google.set_latency(LATENCY)

    kill_when(fake_google, db_path, "contacts", lambda c: count(c, RESYNCED) > 0)

    with sqlite3.connect(db_path) as conn:
        assert count(conn, "SELECT count(*) FROM sync_tokens WHERE scope = 'connections'") == 0
    fake_google.set_latency(0)
    attempt = rerun(fake_google, db_path, "contacts")
    assert attempt["sync_type"] == "full"
    contacts_exact(fake_google, db_path)


def test_a_calendar_sync_killed_after_its_first_calendar_is_finished_exactly_by_the_rerun(
    fake_google, db_path
):
    enroll(fake_google, db_path, calendars=3, events_per_calendar=200)
    fake_google.set_latency(LATENCY)

    kill_when(
        fake_google,
        db_path,
        "calendar",
        lambda c: count(c, "SELECT count(*) FROM sync_tokens WHERE scope LIKE 'events:%'") >= 1,
    )

    with sqlite3.connect(db_path) as conn:
        assert count(conn, "SELECT count(*) FROM calendar_events") == 200
    fake_google.set_latency(0)
    first = sorted(fake_google.calendars(USER))[0]
    fake_google.delete_event(USER, first, sorted(fake_google.events(USER, first))[0])
    rerun(fake_google, db_path, "calendar")
    calendar_exact(fake_google, db_path)


# A fault point instead of a race: the child runs the real `syncctl sync`, but its page
# transactions are wrapped so that the Nth one SIGKILLs the process after the page's rows are
# written and before COMMIT. Which page dies is then exact, whatever the machine's speed.
KILL_INSIDE_PAGE = """
import os, signal, sys
from contextlib import contextmanager
import syncctl.engines._scope as scope
from syncctl.cli import main

kill_at, seen, real = int(sys.argv[1]), [0], scope.transaction

@contextmanager
def transaction(db):
    with real(db) as conn:
        yield conn
        seen[0] += 1
        if seen[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

scope.transaction = transaction
sys.argv = ["syncctl", *sys.argv[2:]]
main()
"""


def kill_inside_page(fake: FakeGoogle, db_path: Path, page: int) -> int:
    """Run a full `syncctl sync` of contacts, SIGKILLed inside the transaction of `page`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCCTL_")}
    env.update(SYNCCTL_GOOGLE_ENDPOINT=fake.base_url, SYNCCTL_CONFIG=os.devnull)
    command = [sys.executable, "-c", KILL_INSIDE_PAGE, str(page), "--db", str(db_path)]
    command += ["sync", "--user", USER, "--integration", "contacts", "--full", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    return done.returncode


@pytest.mark.parametrize(
    ("page", "committed", "what"),
    [(1, 0, "the first page"), (3, 2000, "the last page, token and sweep")],
)
def test_a_sync_killed_inside_a_page_transaction_loses_that_page_and_nothing_else(
    fake_google, db_path, page, committed, what
):
    synced_account(fake_google, db_path, people=2500)  # pages of 1000, 1000 and 500 rows
    with sqlite3.connect(db_path) as conn:
        generation = count(conn, "SELECT max(sync_generation) FROM contacts") + 1
        old_token = conn.execute("SELECT token FROM sync_tokens WHERE scope = 'connections'")
        before = old_token.fetchone()[0]

    assert kill_inside_page(fake_google, db_path, page) == -signal.SIGKILL

    with sqlite3.connect(db_path) as conn:
        assert count(conn, MARKED, generation) == committed, f"{what} was not rolled back"
        token = conn.execute("SELECT token FROM sync_tokens WHERE scope = 'connections'")
        assert token.fetchone()[0] == before  # the new token dies with the last page
    rerun(fake_google, db_path, "contacts")
    contacts_exact(fake_google, db_path)


def test_a_sync_killed_between_the_people_and_the_groups_is_finished_by_the_rerun(
    fake_google, db_path
):
    synced_account(fake_google, db_path)
    fake_google.add_group(USER, name="Book club")
    fake_google.set_latency(LATENCY)
    with sqlite3.connect(db_path) as conn:
        old_token = conn.execute("SELECT token FROM sync_tokens WHERE scope = 'connections'")
        before = old_token.fetchone()[0]
    new_token = "SELECT count(*) FROM sync_tokens WHERE scope = 'connections' AND token != ?"

    kill_when(fake_google, db_path, "contacts", lambda c: count(c, new_token, before) == 1)

    fake_google.set_latency(0)
    attempt = rerun(fake_google, db_path, "contacts")
    assert (attempt["sync_type"], attempt["added"]) == ("incremental", 1)  # the new group
    contacts_exact(fake_google, db_path)
    db = open_database(db_path)
    try:
        truth = {name: group_row(group) for name, group in fake_google.groups(USER).items()}
        assert load_groups(db.conn, USER).keys() == truth.keys()
    finally:
        db.close()
