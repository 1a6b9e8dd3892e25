"""FakeGoogle: the fleet, data, faults and counters behind the loopback server."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from syncctl.clock import Clock, utcnow
from syncctl.fakegoogle import generate
from syncctl.fakegoogle.channels import SentNotification
from syncctl.fakegoogle.faults import ENDPOINTS, FaultRule
from syncctl.fakegoogle.httpd import FakeHTTPServer
from syncctl.fakegoogle.records import Calendar, Collection, Event, Group, Person, UserState
from syncctl.fakegoogle.render import (
    GROUP_FIELDS,
    PERSON_FIELDS,
    render_calendar,
    render_event,
    render_group,
    render_person,
)
from syncctl.fakegoogle.state import ALL_SCOPES, FakeState
from syncctl.fakegoogle.tokens import Consent, RefreshGrant, new_secret

SYSTEM_GROUPS = ("myContacts", "starred")
EVENT_LENGTH = timedelta(hours=1)


class FakeGoogle:
    """A real loopback HTTP server speaking Google's People, Calendar and OAuth wire formats."""

    def __init__(self, *, clock: Clock = utcnow, seed: int = 0) -> None:
        self._state = FakeState(clock=clock, seed=seed)
        self._state.client_secret = new_secret("fake-secret")
        self._server: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._current_grant: dict[str, str] = {}
        self._change_rng = random.Random(f"{seed}:changes")
        self.base_url = ""
        self.notifications_sent: list[SentNotification] = self._state.notifier.sent

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving on a daemon thread and return the base URL `http://HOST:PORT`."""
        if self._server is not None:
            raise RuntimeError("the fake Google is already running")
        server = FakeHTTPServer((host, port), self, self._state)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fakegoogle-http",
            daemon=True,
        )
        self._thread.start()
        self.base_url = f"http://{host}:{server.server_address[1]}"
        self._state.base_url = self.base_url
        self._state.notifier.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving, close open connections and the notifier thread."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._state.notifier.stop()

    def __enter__(self) -> FakeGoogle:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def client_id(self) -> str:
        """The OAuth client id every user's credentials carry."""
        return self._state.client_id

    # -- fleet -------------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        contacts: int = 0,
        groups: int = 0,
        calendars: int = 0,
        events_per_calendar: int = 0,
        scopes: Sequence[str] = ALL_SCOPES,
    ) -> dict[str, Any]:
        """Create an account with generated data; return its authorized-user JSON dict."""
        if not self.base_url:
            raise RuntimeError("start() the fake Google before adding users")
        with self._state.lock:
            if user_id in self._state.users:
                raise ValueError(f"fake user {user_id!r} already exists")
            rng = random.Random(f"{self._state.seed}:{user_id}")
            email = user_id if "@" in user_id else f"{user_id}@example.com"
            user = UserState(
                user_id=user_id,
                email=email,
                subject=str(rng.randrange(10**20, 10**21)),
                scopes=tuple(scopes),
                rng=rng,
            )
            self._state.users[user_id] = user
            now = self._state.now()
            for name in SYSTEM_GROUPS:
                resource_name = f"contactGroups/{name}"
                user.groups.put(
                    resource_name,
                    Group(resource_name, user.bump(), now, name, "SYSTEM_CONTACT_GROUP"),
                )
            group_names = [
                self._create_group(
                    user,
                    generate.GROUP_NAMES[i % len(generate.GROUP_NAMES)]
                    + ("" if i < len(generate.GROUP_NAMES) else f" {i}"),
                )
                for i in range(groups)
            ]
            for _ in range(contacts):
                resource_name = self._new_person_name(user)
                user.people.put(
                    resource_name,
                    generate.random_person(rng, resource_name, user.bump(), now, group_names),
                )
            for i in range(calendars):
                calendar_id = email if i == 0 else self._new_calendar_id(user)
                summary = email if i == 0 else rng.choice(generate.CALENDAR_NAMES)
                self._create_calendar(user, calendar_id, summary, primary=i == 0)
                for _ in range(events_per_calendar):
                    start = generate.random_event_start(rng, now)
                    self._create_event(user, calendar_id, rng.choice(generate.EVENT_NAMES), start)
            return self._issue_grant(user_id)

    def reconnect(self, user_id: str) -> dict[str, Any]:
        """Issue a new refresh token (as a fresh consent would); return new credentials."""
        with self._state.lock:
            self._state.user(user_id)
            return self._issue_grant(user_id)

    def credentials(self, user_id: str) -> dict[str, Any]:
        """The user's current authorized-user JSON dict."""
        with self._state.lock:
            user = self._state.user(user_id)
            return self._credentials(user, self._current_grant[user_id])

    def users(self) -> list[str]:
        """Ids of all fake users."""
        with self._state.lock:
            return list(self._state.users)

    def _issue_grant(self, user_id: str) -> dict[str, Any]:
        refresh_token = new_secret("fake-refresh")
        self._state.refresh_grants[refresh_token] = RefreshGrant(user_id)
        self._state.consented.add(user_id)  # a grant means the user approved the client once
        self._current_grant[user_id] = refresh_token
        return self._credentials(self._state.users[user_id], refresh_token)

    def _credentials(self, user: UserState, refresh_token: str) -> dict[str, Any]:
        return {
            "type": "authorized_user",
            "client_id": self._state.client_id,
            "client_secret": self._state.client_secret,
            "refresh_token": refresh_token,
            "token_uri": self.base_url + "/token",
            "scopes": list(user.scopes),
        }

    # -- contacts and groups -----------------------------------------------------------------

    def add_contact(
        self, user_id: str, *, name: str, email: str | None = None, phone: str | None = None
    ) -> str:
        """Create a contact; return its resource name `people/c...`."""
        with self._state.lock:
            user = self._state.user(user_id)
            resource_name = self._new_person_name(user)
            given, family = generate.split_name(name)
            user.people.put(
                resource_name,
                Person(
                    resource_name,
                    user.bump(),
                    self._state.now(),
                    given,
                    family,
                    emails=(email,) if email else (),
                    phones=(phone,) if phone else (),
                ),
            )
            return resource_name

    def update_contact(
        self,
        user_id: str,
        resource_name: str,
        *,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
    ) -> None:
        """Change a contact's name, email or phone (None keeps a field); the etag changes."""
        with self._state.lock:
            user = self._state.user(user_id)
            person = self._person(user, resource_name)
            changes: dict[str, Any] = {}
            if name is not None:
                changes["given_name"], changes["family_name"] = generate.split_name(name)
            if email is not None:
                changes["emails"] = (email,)
            if phone is not None:
                changes["phones"] = (phone,)
            self._touch_person(user, person, **changes)

    def delete_contact(self, user_id: str, resource_name: str) -> None:
        """Delete a contact (incremental syncs then report it with metadata.deleted)."""
        with self._state.lock:
            user = self._state.user(user_id)
            self._person(user, resource_name)
            user.people.put(
                resource_name, Person(resource_name, user.bump(), self._state.now(), deleted=True)
            )

    def relink_contact(self, user_id: str, resource_name: str) -> str:
        """Give a contact a new resource name, listing the old one in previousResourceNames."""
        with self._state.lock:
            user = self._state.user(user_id)
            person = self._person(user, resource_name)
            new_name = self._new_person_name(user)
            user.people.drop(resource_name)
            # The old name gets no tombstone: clients must honour previousResourceNames.
            user.people.put(
                new_name,
                dataclasses.replace(
                    person,
                    resource_name=new_name,
                    seq=user.bump(),
                    updated=self._state.now(),
                    previous_names=(resource_name, *person.previous_names),
                ),
            )
            return new_name

    def add_group(self, user_id: str, *, name: str) -> str:
        """Create a user contact group; return its resource name `contactGroups/...`."""
        with self._state.lock:
            return self._create_group(self._state.user(user_id), name)

    def update_group(self, user_id: str, resource_name: str, *, name: str) -> None:
        """Rename a user contact group."""
        with self._state.lock:
            user = self._state.user(user_id)
            group = self._user_group(user, resource_name)
            user.groups.put(
                resource_name,
                dataclasses.replace(group, name=name, seq=user.bump(), updated=self._state.now()),
            )

    def delete_group(self, user_id: str, resource_name: str) -> None:
        """Delete a user contact group; its members lose the membership (and change)."""
        with self._state.lock:
            user = self._state.user(user_id)
            group = self._user_group(user, resource_name)
            for person in user.people.live_records():
                if resource_name in person.groups:
                    self._touch_person(
                        user, person, groups=tuple(g for g in person.groups if g != resource_name)
                    )
            user.groups.put(
                resource_name,
                dataclasses.replace(
                    group, seq=user.bump(), updated=self._state.now(), deleted=True
                ),
            )

    def _new_person_name(self, user: UserState) -> str:
        while True:
            resource_name = generate.person_resource_name(user.rng)
            if user.people.get(resource_name) is None:
                return resource_name

    def _person(self, user: UserState, resource_name: str) -> Person:
        person = user.people.live(resource_name)
        if person is None:
            raise ValueError(f"no live contact {resource_name!r} for {user.user_id!r}")
        return person

    def _touch_person(self, user: UserState, person: Person, **changes: Any) -> None:
        user.people.put(
            person.resource_name,
            dataclasses.replace(person, seq=user.bump(), updated=self._state.now(), **changes),
        )

    def _create_group(self, user: UserState, name: str) -> str:
        while True:
            resource_name = generate.group_resource_name(user.rng)
            if user.groups.get(resource_name) is None:
                break
        user.groups.put(resource_name, Group(resource_name, user.bump(), self._state.now(), name))
        return resource_name

    def _user_group(self, user: UserState, resource_name: str) -> Group:
        group = user.groups.live(resource_name)
        if group is None or group.group_type != "USER_CONTACT_GROUP":
            raise ValueError(f"no user contact group {resource_name!r} for {user.user_id!r}")
        return group

    # -- calendars and events ----------------------------------------------------------------

    def add_calendar(
        self, user_id: str, *, summary: str, calendar_id: str | None = None, primary: bool = False
    ) -> str:
        """Add a calendar to the user's calendar list; return its id."""
        with self._state.lock:
            user = self._state.user(user_id)
            calendar_id = calendar_id or self._new_calendar_id(user)
            if user.calendars.live(calendar_id) is not None:
                raise ValueError(f"calendar {calendar_id!r} already exists for {user_id!r}")
            self._create_calendar(user, calendar_id, summary, primary=primary)
            return calendar_id

    def remove_calendar(self, user_id: str, calendar_id: str) -> None:
        """Remove a calendar: deleted in calendarList syncs, its channels get `not_exists`."""
        with self._state.lock:
            user = self._state.user(user_id)
            calendar = self._calendar(user, calendar_id)
            user.calendars.put(
                calendar.calendar_id,
                dataclasses.replace(
                    calendar, seq=user.bump(), updated=self._state.now(), deleted=True
                ),
            )
            user.events.pop(calendar.calendar_id, None)
            self._state.notify(user_id, calendar.calendar_id, "not_exists")
            for channel_id in sorted(self._state.watchers.get((user_id, calendar.calendar_id), ())):
                self._state.drop_channel(self._state.channels[channel_id])

    def add_event(
        self, user_id: str, calendar_id: str, *, summary: str, start: datetime | None = None
    ) -> str:
        """Create a one-hour event (start defaults to a generated time); return its id."""
        with self._state.lock:
            user = self._state.user(user_id)
            calendar = self._calendar(user, calendar_id)
            if start is None:
                start = generate.random_event_start(user.rng, self._state.now())
            event_id = self._create_event(user, calendar.calendar_id, summary, start)
            self._state.notify(user_id, calendar.calendar_id, "exists")
            return event_id

    def update_event(self, user_id: str, calendar_id: str, event_id: str, *, summary: str) -> None:
        """Change an event's summary."""
        with self._state.lock:
            user = self._state.user(user_id)
            calendar, event = self._event(user, calendar_id, event_id)
            user.events[calendar.calendar_id].put(
                event_id,
                dataclasses.replace(
                    event, summary=summary, seq=user.bump(), updated=self._state.now()
                ),
            )
            self._state.notify(user_id, calendar.calendar_id, "exists")

    def delete_event(self, user_id: str, calendar_id: str, event_id: str) -> None:
        """Delete an event: it becomes `status: cancelled` in incremental syncs."""
        with self._state.lock:
            user = self._state.user(user_id)
            calendar, event = self._event(user, calendar_id, event_id)
            user.events[calendar.calendar_id].put(
                event_id,
                dataclasses.replace(
                    event, status="cancelled", seq=user.bump(), updated=self._state.now()
                ),
            )
            self._state.notify(user_id, calendar.calendar_id, "exists")

    def _new_calendar_id(self, user: UserState) -> str:
        while True:
            calendar_id = generate.calendar_id(user.rng)
            if user.calendars.get(calendar_id) is None:
                return calendar_id

    def _create_calendar(
        self, user: UserState, calendar_id: str, summary: str, *, primary: bool
    ) -> None:
        seq = user.bump()
        user.calendars.put(
            calendar_id,
            Calendar(
                calendar_id, seq, self._state.now(), summary, created_seq=seq, primary=primary
            ),
        )
        user.events[calendar_id] = Collection()

    def _create_event(
        self, user: UserState, calendar_id: str, summary: str, start: datetime
    ) -> str:
        events = user.events[calendar_id]
        while True:
            event_id = generate.event_id(user.rng)
            if events.get(event_id) is None:
                break
        now = self._state.now()
        events.put(
            event_id, Event(event_id, user.bump(), now, now, summary, start, start + EVENT_LENGTH)
        )
        return event_id

    def _calendar(self, user: UserState, calendar_id: str) -> Calendar:
        calendar = user.calendar(calendar_id)
        if calendar is None:
            raise ValueError(f"no calendar {calendar_id!r} for {user.user_id!r}")
        return calendar

    def _event(self, user: UserState, calendar_id: str, event_id: str) -> tuple[Calendar, Event]:
        calendar = self._calendar(user, calendar_id)
        event = user.events[calendar.calendar_id].live(event_id)
        if event is None:
            raise ValueError(f"no live event {event_id!r} in {calendar_id!r}")
        return calendar, event

    def random_changes(self, user_id: str, count: int = 5) -> list[str]:
        """Make `count` deterministic random changes to contacts and events; describe them."""
        done: list[str] = []
        rng = self._change_rng
        for _ in range(count):
            with self._state.lock:
                user = self._state.user(user_id)
                people = user.people.live_keys()
                calendars = [c.calendar_id for c in user.calendars.live_records()]
            kinds = ["add_contact"] + (["update_contact", "delete_contact"] if people else [])
            kinds += ["add_event", "update_event", "delete_event"] if calendars else []
            kind = rng.choice(kinds)
            if kind == "add_contact":
                name = f"{rng.choice(generate.FIRST_NAMES)} {rng.choice(generate.LAST_NAMES)}"
                done.append(f"added contact {self.add_contact(user_id, name=name)}")
            elif kind == "update_contact":
                target = rng.choice(people)
                self.update_contact(user_id, target, phone=f"+1 555-0{rng.randrange(100, 1000)}")
                done.append(f"updated contact {target}")
            elif kind == "delete_contact":
                target = rng.choice(people)
                self.delete_contact(user_id, target)
                done.append(f"deleted contact {target}")
            else:
                calendar_id = rng.choice(calendars)
                with self._state.lock:
                    events = user.events[calendar_id].live_keys()
                if kind == "add_event" or not events:
                    event_id = self.add_event(
                        user_id, calendar_id, summary=rng.choice(generate.EVENT_NAMES)
                    )
                    done.append(f"added event {event_id} in {calendar_id}")
                elif kind == "update_event":
                    event_id = rng.choice(events)
                    self.update_event(
                        user_id,
                        calendar_id,
                        event_id,
                        summary=rng.choice(generate.EVENT_NAMES) + " (moved)",
                    )
                    done.append(f"updated event {event_id} in {calendar_id}")
                else:
                    event_id = rng.choice(events)
                    self.delete_event(user_id, calendar_id, event_id)
                    done.append(f"deleted event {event_id} in {calendar_id}")
        return done

    # -- ground truth ------------------------------------------------------------------------

    def contacts(self, user_id: str) -> dict[str, dict[str, Any]]:
        """Live people by resourceName, as connections.list renders them with every field."""
        with self._state.lock:
            return {
                person.resource_name: render_person(person, PERSON_FIELDS, sync=True)
                for person in self._state.user(user_id).people.live_records()
            }

    def groups(self, user_id: str) -> dict[str, dict[str, Any]]:
        """Live contact groups by resourceName, system groups (myContacts, starred) included."""
        with self._state.lock:
            user = self._state.user(user_id)
            counts: Counter[str] = Counter()
            for person in user.people.live_records():
                counts["contactGroups/myContacts"] += 1
                counts.update(person.groups)
            return {
                group.resource_name: render_group(group, GROUP_FIELDS, counts[group.resource_name])
                for group in user.groups.live_records()
            }

    def calendars(self, user_id: str) -> dict[str, dict[str, Any]]:
        """Live calendar-list entries by calendar id."""
        with self._state.lock:
            return {
                calendar.calendar_id: render_calendar(calendar)
                for calendar in self._state.user(user_id).calendars.live_records()
            }

    def events(self, user_id: str, calendar_id: str) -> dict[str, dict[str, Any]]:
        """Live (not cancelled) events of a calendar by event id (`primary` allowed)."""
        with self._state.lock:
            user = self._state.user(user_id)
            calendar = self._calendar(user, calendar_id)
            return {
                event.event_id: render_event(event, calendar.calendar_id)
                for event in user.events[calendar.calendar_id].live_records()
            }

    def channels(self, user_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Open watch channels by channel id (expired ones included until stopped)."""
        with self._state.lock:
            return {
                channel.channel_id: {
                    "user_id": channel.user_id,
                    "calendar_id": channel.calendar_id,
                    "resource_id": channel.resource_id,
                    "address": channel.address,
                    "token": channel.token,
                    "expiration": channel.expiration,
                    "live": channel.live(self._state.now()),
                }
                for channel in self._state.channels.values()
                if user_id is None or channel.user_id == user_id
            }

    # -- the consent screen ------------------------------------------------------------------

    def set_consent(
        self,
        user_id: str | None = None,
        *,
        deny: bool = False,
        scopes: Sequence[str] | None = None,
        refresh_token: bool = True,
    ) -> None:
        """How `/o/oauth2/auth` answers from now on: who signs in (None: the login_hint's
        account, else the first user), whether the user denies, which of the requested scopes
        are granted (None: all), and whether the code exchange returns a refresh token."""
        with self._state.lock:
            if user_id is not None:
                self._state.user(user_id)
            self._state.consent = Consent(
                user_id=user_id,
                deny=deny,
                scopes=None if scopes is None else frozenset(scopes),
                refresh_token=refresh_token,
            )

    def client_secrets(self) -> dict[str, Any]:
        """The OAuth client JSON Google's console downloads for a desktop app, for this fake."""
        return {
            "installed": {
                "client_id": self._state.client_id,
                "client_secret": self._state.client_secret,
                "auth_uri": self.base_url + "/o/oauth2/auth",
                "token_uri": self.base_url + "/token",
                "redirect_uris": ["http://localhost"],
            }
        }

    # -- faults ------------------------------------------------------------------------------

    def rotate_refresh_tokens(self, user_id: str, rotate: bool = True) -> None:
        """Make each refresh of the user return a new refresh token and retire the old one."""
        with self._state.lock:
            self._state.user(user_id)
            if rotate:
                self._state.rotating_users.add(user_id)
            else:
                self._state.rotating_users.discard(user_id)

    def revoke(self, user_id: str) -> None:
        """Revoke the user's grant: refresh gives 400 invalid_grant, access tokens 401."""
        with self._state.lock:
            self._state.user(user_id)
            for grant in self._state.refresh_grants.values():
                if grant.user_id == user_id:
                    grant.revoked = True
            for access in self._state.access_tokens.values():
                if access.user_id == user_id:
                    access.revoked = True

    def expire_sync_tokens(self, user_id: str | None = None) -> None:
        """Expire every sync token issued so far to the user (or to everyone)."""
        with self._state.lock:
            targets = [self._state.user(user_id)] if user_id else self._state.users.values()
            for user in targets:
                user.token_cutoff = self._state.sync_tokens.serial

    def expire_access_tokens(self, user_id: str | None = None) -> None:
        """Expire every access token issued so far to the user (or to everyone)."""
        with self._state.lock:
            for access in self._state.access_tokens.values():
                if user_id is None or access.user_id == user_id:
                    access.expired = True

    def set_latency(self, seconds: float) -> None:
        """Sleep this long before answering every Google request."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        self._state.faults.latency = seconds

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        user_id: str | None = None,
        endpoint: str | None = None,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Fail the next `count` matching requests with a Google-shaped `status` error.

        Without `endpoint` the rule matches data API calls only; name `oauth.token` (or a
        family prefix such as `people`) to target others.
        """
        if (
            endpoint is not None
            and endpoint not in ENDPOINTS
            and endpoint not in ("oauth", "people", "calendar")
        ):
            raise ValueError(f"unknown endpoint {endpoint!r}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self._state.faults.add(FaultRule(status, count, user_id, endpoint, retry_after, reason))

    def set_always_fail(self, user_id: str, status: int | None = 503) -> None:
        """Fail every request of a user (data APIs and token endpoint); None heals."""
        self._state.faults.set_always(user_id, status)

    def set_outage(self, status: int | None = 503) -> None:
        """Google-wide outage: every request of every user (token endpoint included) fails with
        `status` until healed; None (or heal()) ends it."""
        self._state.faults.set_outage(status)

    def rotate_client_secret(self) -> None:
        """The operator rotates the OAuth client's secret at Google: refreshes with the old one
        get 401 invalid_client; `credentials(user)` hands out the new one."""
        with self._state.lock:
            self._state.client_secret = new_secret("fake-secret")

    def heal(self, user_id: str | None = None) -> None:
        """Clear injected faults of one user, or all faults and latency."""
        self._state.faults.clear(user_id)

    # -- counters and notifications ----------------------------------------------------------

    def request_count(self, user_id: str | None = None, endpoint: str | None = None) -> int:
        """Requests received; None means any user / any endpoint."""
        return self._state.counters.total(user_id, endpoint)

    def counts(self) -> dict[tuple[str | None, str], int]:
        """Every counter: (user id or None if unattributed, endpoint) -> requests."""
        return self._state.counters.snapshot()

    def reset_counts(self) -> None:
        """Zero every counter."""
        self._state.counters.reset()

    def wait_for_notifications(self, count: int, timeout: float = 5.0) -> list[SentNotification]:
        """Block until `count` webhook POSTs were made (or timeout); return all of them."""
        return self._state.notifier.wait_for(count, timeout)

    def drop_notifications(self, share: float) -> None:
        """Drop this share (0..1) of change notifications, as Google may (seeded, repeatable)."""
        if not 0.0 <= share <= 1.0:
            raise ValueError("the share of dropped notifications is between 0 and 1")
        self._state.notifier.drop_share = share

    def flush_notifications(self, timeout: float = 5.0) -> bool:
        """Block until every queued webhook POST was attempted; False on timeout."""
        return self._state.notifier.flush(timeout)
