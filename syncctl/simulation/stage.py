"""A stage for one simulated run: the fake Google and a fresh database, the fleet loaded into both,
and the script played onto the fake as the virtual clock reaches each event."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.model import Integration
from syncctl.simulation.clock import VirtualClock
from syncctl.simulation.scenario import FAILING_STATUS, Action, Scenario
from syncctl.store import open_database
from syncctl.users import add_user, parse_credentials


@dataclass(frozen=True)
class Change:
    """One change made at Google: when, to whom, which integration, and which listing shows it
    (`contacts`, or `calendar:<id>` for one calendar's events)."""

    at: datetime
    user_id: str
    integration: Integration
    listing: str = ""


@dataclass
class Stage:
    """The running fake, the database and the clock of one simulated run."""

    scenario: Scenario
    clock: VirtualClock
    fake: FakeGoogle
    settings: Settings
    db: sqlite_utils.Database
    changes: list[Change] = field(default_factory=list)
    # Called after each change, before the clock moves on (e.g. to deliver webhook pushes).
    after_change: Callable[[], None] | None = None
    happenings: list[str] = field(default_factory=list)
    # The fake's request count when the scenario's window (outage, client rotation) opened and
    # when it closed.
    window_counts: list[int] = field(default_factory=list)
    # Called with a later time before the clock moves to it (e.g. to run the webhook
    # dispatches that fall due before it).
    before_moving: Callable[[datetime], None] | None = None
    # Only these users are in the database (None: the whole fleet); the fake holds every user.
    polled: frozenset[str] | None = None
    imports: int = 0  # how often the fleet was re-imported (every stored grant replaced)
    _cursor: int = 0
    _digest: Any = field(default_factory=hashlib.sha256)

    def play_until(self, moment: datetime) -> list[str]:
        """Apply every script event up to `moment`, each at its own virtual time; the clock ends
        at `moment`. Returns notes on revocations and outages that happened."""
        notes: list[str] = []
        script = self.scenario.script
        while self._cursor < len(script) and script[self._cursor].at <= moment:
            event = script[self._cursor]
            if self.before_moving is not None:
                self.before_moving(event.at)
            self._cursor += 1
            self.clock.advance_to(event.at)
            if event.action is Action.CHANGE:
                for description in self.fake.random_changes(event.user_id, event.count):
                    self._digest.update(f"{event.at.isoformat()} {description}\n".encode())
                    self.changes.append(
                        Change(
                            event.at,
                            event.user_id,
                            _integration(description),
                            _listing(description),
                        )
                    )
                if self.after_change is not None:
                    self.after_change()
            elif event.action is Action.REVOKE:
                self.fake.revoke(event.user_id)
                notes.append(f"{event.at:%Y-%m-%d %H:%M} {event.user_id}'s grant revoked at Google")
            elif event.action in (Action.OUTAGE_START, Action.ROTATE_SECRET):
                self.window_counts.append(self.fake.request_count())
                if event.action is Action.OUTAGE_START:
                    self.fake.set_outage(FAILING_STATUS)
                    notes.append(f"{event.at:%Y-%m-%d %H:%M} all of Google answers 503")
                else:
                    self.fake.rotate_client_secret()
                    notes.append(f"{event.at:%Y-%m-%d %H:%M} the OAuth client secret is rotated")
            elif event.action in (Action.OUTAGE_END, Action.UPDATE_SECRET):
                self.window_counts.append(self.fake.request_count())
                if event.action is Action.OUTAGE_END:
                    self.fake.set_outage(None)
                    notes.append(f"{event.at:%Y-%m-%d %H:%M} Google is back")
                else:
                    self._update_credentials()
                    notes.append(f"{event.at:%Y-%m-%d %H:%M} the fleet is re-imported")
            elif event.action is Action.FAIL:
                self.fake.set_always_fail(event.user_id, FAILING_STATUS)
                notes.append(
                    f"{event.at:%Y-%m-%d %H:%M} every Google request of {event.user_id} fails"
                    f" with {FAILING_STATUS} from now on"
                )
        if self.before_moving is not None:
            self.before_moving(moment)
        self.clock.advance_to(moment)
        self.happenings.extend(notes)
        return notes

    def _update_credentials(self) -> None:
        # What the operator does after rotating the secret: store every user's credentials
        # again with the new secret (as `syncctl user import` would).
        self.imports += 1
        for user in self.scenario.users:
            if self.polled is not None and user.user_id not in self.polled:
                continue
            add_user(
                self.db,
                self.settings,
                user.user_id,
                parse_credentials(self.fake.credentials(user.user_id)),
                now=self.clock.now(),
                email=f"{user.user_id}@example.com",
            )

    @property
    def window_calls(self) -> int | None:
        """Requests the fake received inside the scenario's window (None without one)."""
        if len(self.window_counts) < 2:
            return None
        return self.window_counts[1] - self.window_counts[0]

    @property
    def script_fingerprint(self) -> str:
        """A digest of every change made so far: equal across runs that made the same changes."""
        return self._digest.hexdigest()[:16]


def _integration(description: str) -> Integration:
    # FakeGoogle.random_changes describes each change as "<verb> contact ..." or "<verb> event ...".
    return Integration.CONTACTS if description.split()[1] == "contact" else Integration.CALENDAR


def _listing(description: str) -> str:
    # "<verb> event <event id> in <calendar id>": one calendar's events.list shows it.
    if _integration(description) is Integration.CONTACTS:
        return "contacts"
    return "calendar:" + description.split(" in ", 1)[1]


@contextmanager
def staged(
    scenario: Scenario, base: Settings, db_path: Path, *, users: frozenset[str] | None = None
) -> Iterator[Stage]:
    """Start the fake Google on the scenario's virtual clock, create the database at `db_path`
    and add the fleet to the fake and `users` of it (default: all) to the database; stop and
    close everything on exit."""
    clock = VirtualClock(scenario.start)
    fake = FakeGoogle(clock=clock.now, seed=scenario.seed)
    base_url = fake.start()
    fake.drop_notifications(scenario.drop_share)
    db: sqlite_utils.Database | None = None
    try:
        settings = replace(base, db_path=db_path, google_endpoint=base_url, webhook_url=None)
        db = open_database(db_path)
        for user in scenario.users:
            credentials = fake.add_user(
                user.user_id,
                contacts=user.contacts,
                groups=user.groups,
                calendars=user.calendars,
                events_per_calendar=user.events_per_calendar,
            )
            if users is not None and user.user_id not in users:
                continue
            add_user(
                db,
                settings,
                user.user_id,
                parse_credentials(credentials),
                now=clock.now(),
                email=f"{user.user_id}@example.com",
            )
        yield Stage(scenario, clock, fake, settings, db, polled=users)
    finally:
        if db is not None:
            db.close()
        fake.stop()


@contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A private throwaway directory, in memory (/dev/shm) where there is one and TMPDIR does not
    say otherwise: simulated databases are discarded, and fsyncs to a disk would only slow the
    run."""
    shm = Path("/dev/shm")  # noqa: S108 (mkdtemp makes a private directory inside it)
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    where = os.environ.get("TMPDIR") or where
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
