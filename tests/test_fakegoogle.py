"""The fake Google, driven through the real google-api-python-client and google-auth."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from freezegun import freeze_time
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from syncctl.fakegoogle import FakeGoogle

PERSON_FIELDS = "names,emailAddresses,phoneNumbers,metadata,memberships"
CONTACTS_ONLY = ("https://www.googleapis.com/auth/contacts.readonly",)


class CountingHttp(httplib2.Http):
    """An httplib2.Http that counts every request it sends (token refreshes included)."""

    def __init__(self) -> None:
        super().__init__(timeout=5, proxy_info=None)
        self.calls = 0

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls += 1
        return super().request(*args, **kwargs)


@dataclass
class Client:
    people: Any
    calendar: Any
    http: CountingHttp
    credentials: Credentials


def connect(fake: FakeGoogle, info: dict[str, Any]) -> Client:
    """Build the People and Calendar services the way syncctl does, against the fake."""
    credentials = Credentials(
        None,
        refresh_token=info["refresh_token"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        token_uri=fake.base_url + "/token",
    )
    http = CountingHttp()
    authorized = google_auth_httplib2.AuthorizedHttp(credentials, http=http)
    common: dict[str, Any] = {
        "static_discovery": True,
        "cache_discovery": False,
        "http": authorized,
    }
    people = build("people", "v1", client_options={"api_endpoint": fake.base_url + "/"}, **common)
    calendar = build(
        "calendar",
        "v3",
        client_options={"api_endpoint": fake.base_url + "/calendar/v3/"},
        **common,
    )
    return Client(people, calendar, http, credentials)


def list_all_connections(client: Client, **params: Any) -> list[dict[str, Any]]:
    """Every page of a connections.list call, following nextPageToken."""
    connections = client.people.people().connections()
    params.setdefault("personFields", PERSON_FIELDS)
    request = connections.list(resourceName="people/me", **params)
    pages = []
    while request is not None:
        page = request.execute()
        pages.append(page)
        request = connections.list_next(request, page)
    return pages


def error_json(error: HttpError) -> dict[str, Any]:
    return json.loads(error.content)["error"]


class MutableClock:
    """An injectable clock tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def clocked_fake(clock: MutableClock) -> Iterator[FakeGoogle]:
    fake = FakeGoogle(clock=clock)
    fake.start()
    yield fake
    fake.stop()


@dataclass
class Receiver:
    url: str
    received: list[dict[str, str]]
    condition: threading.Condition

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
        with self.condition:
            self.condition.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A tiny local webhook receiver recording the headers of every POST."""
    received: list[dict[str, str]] = []
    condition = threading.Condition()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            with condition:
                received.append({k.lower(): v for k, v in self.headers.items()})
                condition.notify_all()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", received, condition)
    server.shutdown()
    server.server_close()


# -- OAuth ------------------------------------------------------------------------------------


def test_first_call_refreshes_the_token_then_lists_people(fake_google: FakeGoogle) -> None:
    info = fake_google.add_user("u1", contacts=3)
    client = connect(fake_google, info)

    page = (
        client.people.people()
        .connections()
        .list(resourceName="people/me", personFields=PERSON_FIELDS)
        .execute()
    )

    assert info["type"] == "authorized_user"
    assert info["token_uri"] == fake_google.base_url + "/token"
    assert len(page["connections"]) == 3
    assert {p["resourceName"] for p in page["connections"]} == set(fake_google.contacts("u1"))
    assert all(p["resourceName"].startswith("people/c") for p in page["connections"])
    assert fake_google.request_count("u1", "oauth.token") == 1
    assert fake_google.request_count("u1", "people.connections.list") == 1
    assert client.credentials.expiry is not None


def test_refresh_with_a_wrong_client_secret_is_invalid_client(fake_google: FakeGoogle) -> None:
    info = fake_google.add_user("u1")
    client = connect(fake_google, {**info, "client_secret": "not-it"})

    with pytest.raises(RefreshError) as caught:
        client.people.contactGroups().list().execute()

    assert caught.value.args[1]["error"] == "invalid_client"


def test_revoked_user_gets_invalid_grant_on_refresh(fake_google: FakeGoogle) -> None:
    info = fake_google.add_user("u1", contacts=1)
    client = connect(fake_google, info)
    client.people.contactGroups().list().execute()

    fake_google.revoke("u1")
    with pytest.raises(RefreshError) as caught:
        client.people.contactGroups().list().execute()

    # The live access token now gets 401, the refresh it triggers gets invalid_grant.
    assert caught.value.args[1] == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    assert fake_google.request_count("u1", "people.contactGroups.list") == 2
    assert fake_google.request_count("u1", "oauth.token") == 2


def test_reconnect_issues_a_working_refresh_token(fake_google: FakeGoogle) -> None:
    fake_google.add_user("u1")
    fake_google.revoke("u1")

    client = connect(fake_google, fake_google.reconnect("u1"))

    assert "contactGroups" in client.people.contactGroups().list().execute()


def test_expired_access_token_gets_401_and_the_client_refreshes(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=1))
    groups = client.people.contactGroups()
    groups.list().execute()

    fake_google.expire_access_tokens("u1")
    groups.list().execute()

    assert fake_google.request_count("u1", "oauth.token") == 2
    assert fake_google.request_count("u1", "people.contactGroups.list") == 3
    assert client.http.calls == fake_google.request_count("u1")


def test_access_token_expires_after_3599_seconds_of_the_injected_clock(
    clocked_fake: FakeGoogle, clock: MutableClock
) -> None:
    client = connect(clocked_fake, clocked_fake.add_user("u1"))
    client.credentials.refresh(google_auth_httplib2.Request(CountingHttp()))
    token = client.credentials.token

    def tokeninfo() -> tuple[int, dict[str, Any]]:
        url = f"{clocked_fake.base_url}/tokeninfo?access_token={token}"
        try:
            with urllib.request.urlopen(url) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, body = tokeninfo()
    assert status == 200
    assert body["expires_in"] == "3599"
    assert body["aud"] == clocked_fake.client_id
    clock.advance(seconds=3599)
    assert tokeninfo() == (400, {"error": "invalid_token", "error_description": "Invalid Value"})
    assert clocked_fake.request_count("u1", "oauth.tokeninfo") == 2


def test_missing_scope_is_403_in_each_api_shape(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1, scopes=CONTACTS_ONLY))

    with pytest.raises(HttpError) as caught:
        client.calendar.calendarList().list().execute()

    error = error_json(caught.value)
    assert caught.value.resp.status == 403
    assert error["errors"][0]["reason"] == "insufficientPermissions"
    assert error["status"] == "PERMISSION_DENIED"
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def test_people_missing_scope_has_error_info(fake_google: FakeGoogle) -> None:
    scopes = ("https://www.googleapis.com/auth/calendar.readonly",)
    client = connect(fake_google, fake_google.add_user("u1", scopes=scopes))

    with pytest.raises(HttpError) as caught:
        client.people.contactGroups().list().execute()

    assert caught.value.resp.status == 403
    assert error_json(caught.value)["status"] == "PERMISSION_DENIED"
    assert caught.value.error_details[0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def test_data_call_without_token_is_401_with_www_authenticate(fake_google: FakeGoogle) -> None:
    response, content = httplib2.Http(proxy_info=None).request(
        fake_google.base_url + "/calendar/v3/users/me/calendarList"
    )

    assert response.status == 401
    assert response["www-authenticate"].startswith("Bearer")
    assert json.loads(content)["error"]["status"] == "UNAUTHENTICATED"
    assert fake_google.request_count(endpoint="calendar.calendarList.list") == 1


# -- People -----------------------------------------------------------------------------------


def test_people_pages_carry_the_sync_token_on_the_last_page_only(
    fake_google: FakeGoogle,
) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=7))

    pages = list_all_connections(client, pageSize=3, requestSyncToken=True)

    assert [len(page["connections"]) for page in pages] == [3, 3, 1]
    assert ["nextSyncToken" in page for page in pages] == [False, False, True]
    assert ["nextPageToken" in page for page in pages] == [True, True, False]
    assert pages[0]["totalItems"] == 7
    names = [p["resourceName"] for page in pages for p in page["connections"]]
    assert sorted(names) == sorted(fake_google.contacts("u1"))


def test_people_sync_token_needs_request_sync_token(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=2))

    pages = list_all_connections(client)

    assert "nextSyncToken" not in pages[-1]


def test_people_person_fields_are_required(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=2))

    with pytest.raises(HttpError) as caught:
        client.people.people().connections().list(resourceName="people/me").execute()

    assert caught.value.resp.status == 400
    assert "personFields" in caught.value.reason


def test_people_returns_only_the_requested_fields(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1"))
    fake_google.add_contact("u1", name="Ada Lovelace", email="ada@example.org", phone="+1 555")

    [page] = list_all_connections(client, personFields="names")

    [person] = page["connections"]
    assert set(person) == {"resourceName", "etag", "names"}
    assert person["names"][0]["displayName"] == "Ada Lovelace"
    assert person["names"][0]["givenName"] == "Ada"


def test_people_incremental_sync_returns_changes_and_deletions(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=5))
    first = list_all_connections(client, requestSyncToken=True)
    before = {p["resourceName"]: p for p in first[0]["connections"]}
    changed, deleted, relinked, *_ = sorted(before)

    fake_google.update_contact("u1", changed, email="new@example.org")
    fake_google.delete_contact("u1", deleted)
    added = fake_google.add_contact("u1", name="Grace Hopper")
    new_name = fake_google.relink_contact("u1", relinked)
    pages = list_all_connections(
        client, syncToken=first[-1]["nextSyncToken"], requestSyncToken=True
    )

    people = {p["resourceName"]: p for page in pages for p in page.get("connections", [])}
    assert set(people) == {changed, deleted, added, new_name}
    assert people[changed]["emailAddresses"][0]["value"] == "new@example.org"
    assert people[changed]["etag"] != before[changed]["etag"]
    assert people[deleted] == {
        "resourceName": deleted,
        "etag": people[deleted]["etag"],
        "metadata": {"deleted": True},
    }
    assert people[new_name]["metadata"]["previousResourceNames"] == [relinked]
    assert "nextSyncToken" in pages[-1]


def test_people_incremental_sync_without_changes_is_empty(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=3))
    first = list_all_connections(client, requestSyncToken=True)

    [page] = list_all_connections(
        client, syncToken=first[-1]["nextSyncToken"], requestSyncToken=True
    )

    assert "connections" not in page
    assert page["nextSyncToken"] != first[-1]["nextSyncToken"]


def test_people_expired_sync_token_is_400_expired_sync_token(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=2))
    token = list_all_connections(client, requestSyncToken=True)[-1]["nextSyncToken"]

    fake_google.expire_sync_tokens("u1")
    with pytest.raises(HttpError) as caught:
        list_all_connections(client, syncToken=token, requestSyncToken=True)

    assert caught.value.resp.status == 400
    assert caught.value.error_details[0]["reason"] == "EXPIRED_SYNC_TOKEN"
    assert caught.value.reason.startswith("Sync token is expired.")


def test_people_sync_token_expires_seven_days_after_issue(
    clocked_fake: FakeGoogle, clock: MutableClock
) -> None:
    client = connect(clocked_fake, clocked_fake.add_user("u1", contacts=2))
    token = list_all_connections(client, requestSyncToken=True)[-1]["nextSyncToken"]

    clock.advance(days=7, seconds=-1)
    list_all_connections(client, syncToken=token, requestSyncToken=True)
    clock.advance(seconds=1)
    with pytest.raises(HttpError) as caught:
        list_all_connections(client, syncToken=token, requestSyncToken=True)

    assert caught.value.error_details[0]["reason"] == "EXPIRED_SYNC_TOKEN"
    # The access token also expired by the injected clock: 401, refresh, retry.
    assert clocked_fake.request_count("u1", "oauth.token") == 2
    assert client.http.calls == clocked_fake.request_count("u1")


def test_contact_groups_incremental_reports_deleted_groups(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=4, groups=2))
    first = client.people.contactGroups().list().execute()
    names = {g["resourceName"] for g in first["contactGroups"]}
    assert names == set(fake_google.groups("u1"))
    user_group = next(
        g["resourceName"] for g in first["contactGroups"] if g["groupType"] == "USER_CONTACT_GROUP"
    )

    fake_google.delete_group("u1", user_group)
    added = fake_google.add_group("u1", name="Climbing")
    changes = client.people.contactGroups().list(syncToken=first["nextSyncToken"]).execute()

    by_name = {g["resourceName"]: g for g in changes["contactGroups"]}
    assert set(by_name) == {user_group, added}
    assert by_name[user_group]["metadata"]["deleted"] is True
    assert by_name[added]["name"] == "Climbing"


def test_full_sync_of_25000_contacts_in_1000_person_pages(fake_google: FakeGoogle) -> None:
    # How long it takes is measured by benchmarks/bench_contacts_sync.py, not here.
    client = connect(fake_google, fake_google.add_user("big", contacts=25_000))

    pages = list_all_connections(client, pageSize=1000, requestSyncToken=True)

    assert [len(page["connections"]) for page in pages] == [1000] * 25
    names = {person["resourceName"] for page in pages for person in page["connections"]}
    assert len(names) == 25_000  # every contact, once
    assert ["nextPageToken" in page for page in pages] == [True] * 24 + [False]
    assert "nextSyncToken" in pages[-1]


# -- Calendar ---------------------------------------------------------------------------------


def list_all_events(client: Client, calendar_id: str, **params: Any) -> list[dict[str, Any]]:
    events = client.calendar.events()
    request = events.list(calendarId=calendar_id, **params)
    pages = []
    while request is not None:
        page = request.execute()
        pages.append(page)
        request = events.list_next(request, page)
    return pages


def test_calendar_pages_carry_page_token_xor_sync_token(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1, events_per_calendar=5))

    pages = list_all_events(client, "primary", maxResults=2)

    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    for page in pages:
        assert ("nextPageToken" in page) != ("nextSyncToken" in page)
    assert "nextSyncToken" in pages[-1]
    ids = {event["id"] for page in pages for event in page["items"]}
    assert ids == set(fake_google.events("u1", "primary"))


def test_calendar_incremental_sync_returns_cancelled_events(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=2, events_per_calendar=3))
    calendar_id = next(c for c, e in fake_google.calendars("u1").items() if not e.get("primary"))
    [first] = list_all_events(client, calendar_id)
    kept, gone, _ = sorted(event["id"] for event in first["items"])

    fake_google.update_event("u1", calendar_id, kept, summary="Moved")
    fake_google.delete_event("u1", calendar_id, gone)
    added = fake_google.add_event("u1", calendar_id, summary="New")
    [changes] = list_all_events(client, calendar_id, syncToken=first["nextSyncToken"])

    items = {event["id"]: event for event in changes["items"]}
    assert set(items) == {kept, gone, added}
    assert items[kept]["summary"] == "Moved"
    assert items[gone]["status"] == "cancelled"
    assert items[added]["status"] == "confirmed"
    assert gone not in fake_google.events("u1", calendar_id)


def test_calendar_expired_sync_token_is_410_full_sync_required(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1, events_per_calendar=1))
    token = list_all_events(client, "primary")[-1]["nextSyncToken"]

    fake_google.expire_sync_tokens()
    with pytest.raises(HttpError) as caught:
        list_all_events(client, "primary", syncToken=token)

    assert caught.value.resp.status == 410
    assert caught.value.error_details[0]["reason"] == "fullSyncRequired"


def test_calendar_sync_token_with_time_min_is_400(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1, events_per_calendar=1))
    token = list_all_events(client, "primary")[-1]["nextSyncToken"]

    with pytest.raises(HttpError) as caught:
        list_all_events(client, "primary", syncToken=token, timeMin="2026-01-01T00:00:00Z")

    assert caught.value.resp.status == 400


def test_calendar_list_incremental_reports_removed_calendars(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=3))
    first = client.calendar.calendarList().list().execute()
    assert {c["id"] for c in first["items"]} == set(fake_google.calendars("u1"))
    removed = next(c["id"] for c in first["items"] if not c.get("primary"))

    fake_google.remove_calendar("u1", removed)
    changes = client.calendar.calendarList().list(syncToken=first["nextSyncToken"]).execute()

    assert changes["items"] == [
        {
            "kind": "calendar#calendarListEntry",
            "etag": changes["items"][0]["etag"],
            "id": removed,
            "deleted": True,
        }
    ]
    with pytest.raises(HttpError) as caught:
        list_all_events(client, removed)
    assert caught.value.resp.status == 404


def test_calendar_ids_are_url_decoded(fake_google: FakeGoogle) -> None:
    fake_google.add_user("u1")
    calendar_id = fake_google.add_calendar("u1", summary="Odd", calendar_id="a b/c@x.com")
    event_id = fake_google.add_event("u1", calendar_id, summary="Hi")
    client = connect(fake_google, fake_google.credentials("u1"))

    [page] = list_all_events(client, calendar_id)

    assert [event["id"] for event in page["items"]] == [event_id]


# -- faults -----------------------------------------------------------------------------------


def test_fail_next_429_has_retry_after_and_people_body(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", contacts=1))
    fake_google.fail_next(429, user_id="u1", retry_after=2)

    with pytest.raises(HttpError) as caught:
        list_all_connections(client)
    list_all_connections(client)

    assert caught.value.resp.status == 429
    assert caught.value.resp["retry-after"] == "2"
    assert error_json(caught.value)["status"] == "RESOURCE_EXHAUSTED"
    assert fake_google.request_count("u1", "people.connections.list") == 2
    assert fake_google.request_count("u1", "oauth.token") == 1  # faults skip /token by default


def test_fail_next_403_rate_limit_has_calendar_shape(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1))
    fake_google.fail_next(
        403, endpoint="calendar.calendarList.list", reason="userRateLimitExceeded"
    )

    with pytest.raises(HttpError) as caught:
        client.calendar.calendarList().list().execute()

    assert caught.value.resp.status == 403
    assert caught.value.error_details[0] == {
        "domain": "usageLimits",
        "reason": "userRateLimitExceeded",
        "message": "User Rate Limit Exceeded",
    }


def test_fail_next_only_matches_its_user_and_endpoint(fake_google: FakeGoogle) -> None:
    one = connect(fake_google, fake_google.add_user("u1", calendars=1))
    two = connect(fake_google, fake_google.add_user("u2", calendars=1))
    fake_google.fail_next(503, count=2, user_id="u2", endpoint="calendar.events.list")

    one.calendar.events().list(calendarId="primary").execute()
    two.calendar.calendarList().list().execute()
    for _ in range(2):
        with pytest.raises(HttpError) as caught:
            two.calendar.events().list(calendarId="primary").execute()
        assert caught.value.error_details[0]["reason"] == "backendError"
    two.calendar.events().list(calendarId="primary").execute()


def test_always_fail_covers_the_token_endpoint_until_healed(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1"))
    fake_google.set_always_fail("u1", 403)

    with pytest.raises(RefreshError):
        client.people.contactGroups().list().execute()
    refreshes = fake_google.request_count("u1", "oauth.token")
    fake_google.heal("u1")
    client.people.contactGroups().list().execute()

    assert refreshes == 1  # a 403 refresh is not retried (a 5xx would be, with sleeps)
    assert client.http.calls == fake_google.request_count("u1") == 3


def test_latency_delays_every_request(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1"))
    fake_google.set_latency(0.1)

    started = time.monotonic()
    client.people.contactGroups().list().execute()

    assert time.monotonic() - started >= 0.2  # the refresh and the list


def test_counts_match_the_clients_own_counter(fake_google: FakeGoogle) -> None:
    client = connect(
        fake_google, fake_google.add_user("u1", contacts=30, calendars=2, events_per_calendar=30)
    )
    other = connect(fake_google, fake_google.add_user("u2", contacts=3))

    list_all_connections(client, pageSize=7, requestSyncToken=True)
    for entry in client.calendar.calendarList().list().execute()["items"]:
        list_all_events(client, entry["id"], maxResults=9)
    list_all_connections(other)
    httplib2.Http(proxy_info=None).request(fake_google.base_url + "/nowhere")

    assert fake_google.request_count("u1") == client.http.calls == 1 + 5 + 1 + 4 + 4
    assert fake_google.request_count("u2") == other.http.calls == 2
    assert fake_google.request_count(endpoint="unknown") == 1
    assert fake_google.counts()[(None, "unknown")] == 1
    fake_google.reset_counts()
    assert fake_google.request_count() == 0


# -- push notifications -----------------------------------------------------------------------


def test_watch_sends_sync_then_exists_on_change(
    fake_google: FakeGoogle, receiver: Receiver
) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1, events_per_calendar=1))
    body = {"id": "chan-1", "type": "web_hook", "address": receiver.url, "token": "t0k"}

    channel = client.calendar.events().watch(calendarId="primary", body=body).execute()
    receiver.wait_for(1)
    fake_google.add_event("u1", "primary", summary="Changed")
    fake_google.add_event("u1", "primary", summary="Again")
    got = receiver.wait_for(3)

    assert channel["kind"] == "api#channel"
    assert channel["id"] == "chan-1"
    assert channel["token"] == "t0k"
    expected_expiry = datetime.now(UTC) + timedelta(seconds=604800)
    expiry = datetime.fromtimestamp(int(channel["expiration"]) / 1000, UTC)
    assert abs((expiry - expected_expiry).total_seconds()) < 60
    assert [h["x-goog-resource-state"] for h in got] == ["sync", "exists", "exists"]
    assert [h["x-goog-message-number"] for h in got] == ["1", "2", "3"]
    assert {h["x-goog-channel-id"] for h in got} == {"chan-1"}
    assert {h["x-goog-channel-token"] for h in got} == {"t0k"}
    assert {h["x-goog-resource-id"] for h in got} == {channel["resourceId"]}
    assert got[0]["x-goog-resource-uri"] == channel["resourceUri"]
    assert got[0]["x-goog-channel-expiration"].endswith("GMT")
    sent = fake_google.wait_for_notifications(3)
    assert [(n.resource_state, n.status) for n in sent] == [
        ("sync", 200),
        ("exists", 200),
        ("exists", 200),
    ]


def test_stopped_channel_gets_no_more_notifications(
    fake_google: FakeGoogle, receiver: Receiver
) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1))
    body = {"id": "chan-2", "type": "web_hook", "address": receiver.url, "params": {"ttl": "3600"}}
    channel = client.calendar.events().watch(calendarId="primary", body=body).execute()
    stop = {"id": "chan-2", "resourceId": channel["resourceId"]}

    assert client.calendar.channels().stop(body=stop).execute() in ("", {})
    fake_google.add_event("u1", "primary", summary="Unheard")
    assert fake_google.flush_notifications()
    with pytest.raises(HttpError) as caught:
        client.calendar.channels().stop(body=stop).execute()

    assert caught.value.resp.status == 404
    assert [h["x-goog-resource-state"] for h in receiver.received] == ["sync"]
    assert fake_google.channels() == {}


def test_unreachable_webhook_is_recorded_without_blocking(fake_google: FakeGoogle) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1))
    body = {"id": "chan-3", "type": "web_hook", "address": "http://127.0.0.1:9/hook"}

    client.calendar.events().watch(calendarId="primary", body=body).execute()
    [sent] = fake_google.wait_for_notifications(1)

    assert sent.status is None
    assert sent.error


def test_notifications_reuse_one_connection_and_survive_a_receiver_closing_it(
    fake_google: FakeGoogle,
) -> None:
    # A real socket receiver that answers HTTP/1.1 keep-alive, but closes its first connection
    # right after the first answer, as a receiver closing an idle connection would.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    requests: list[bytes] = []

    def serve() -> None:
        for number in (1, 2):
            connection, _ = listener.accept()
            accepted.append(number)
            with connection, connection.makefile("rb") as stream:
                while head := _read_request_head(stream):
                    requests.append(head)
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    if number == 1:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = connect(fake_google, fake_google.add_user("u1", calendars=1))
    address = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    body = {"id": "chan-keep", "type": "web_hook", "address": address}
    client.calendar.events().watch(calendarId="primary", body=body).execute()
    assert fake_google.flush_notifications()
    time.sleep(0.1)  # the receiver has closed the first connection by now
    for n in range(3):
        fake_google.add_event("u1", "primary", summary=f"Change {n}")
    assert fake_google.flush_notifications()

    assert [sent.status for sent in fake_google.notifications_sent] == [200] * 4
    assert accepted == [1, 2]  # the 2nd notification found the 1st connection closed
    assert len(requests) == 4  # each notification reached the receiver once
    listener.close()


def _read_request_head(stream: Any) -> bytes:
    head = b""
    while (line := stream.readline()) not in (b"\r\n", b""):
        head += line
    return head


def test_a_dropped_share_of_change_notifications_is_never_sent(
    fake_google: FakeGoogle, receiver: Receiver
) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1))
    body = {"id": "chan-4", "type": "web_hook", "address": receiver.url, "token": "t"}
    fake_google.drop_notifications(0.25)
    client.calendar.events().watch(calendarId="primary", body=body).execute()
    for n in range(200):
        fake_google.add_event("u1", "primary", summary=f"Change {n}")
    assert fake_google.flush_notifications()

    states = [h["x-goog-resource-state"] for h in receiver.received]
    assert states.count("sync") == 1  # a new channel's sync message is never dropped
    assert states.count("exists") + fake_google.dropped_notifications == 200
    assert 25 <= fake_google.dropped_notifications <= 75  # 50 expected; 3.5 sigma either way


def test_dropping_every_notification_or_none_and_refusing_a_share_outside_0_to_1(
    fake_google: FakeGoogle, receiver: Receiver
) -> None:
    client = connect(fake_google, fake_google.add_user("u1", calendars=1))
    body = {"id": "chan-5", "type": "web_hook", "address": receiver.url}
    client.calendar.events().watch(calendarId="primary", body=body).execute()
    fake_google.drop_notifications(1.0)
    fake_google.add_event("u1", "primary", summary="Lost")
    fake_google.drop_notifications(0.0)
    fake_google.add_event("u1", "primary", summary="Heard")
    assert fake_google.flush_notifications()

    assert [h["x-goog-resource-state"] for h in receiver.received] == ["sync", "exists"]
    assert fake_google.dropped_notifications == 1
    for share in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            fake_google.drop_notifications(share)


# -- determinism, control surface and CLI -----------------------------------------------------


def test_same_seed_gives_the_same_data() -> None:
    def snapshot(seed: int) -> tuple[Any, ...]:
        fake = FakeGoogle(seed=seed)
        fake.start()
        try:
            fake.add_user("u1", contacts=5, groups=2, calendars=2, events_per_calendar=3)
            contacts = {k: v["names"] for k, v in fake.contacts("u1").items()}
            return contacts, sorted(fake.calendars("u1")), list(fake.groups("u1"))
        finally:
            fake.stop()

    assert snapshot(1) == snapshot(1)
    assert snapshot(1) != snapshot(2)


def _post(url: str, document: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310
        url, data=json.dumps(document or {}).encode(), method="POST"
    )
    with urllib.request.urlopen(request) as response:  # noqa: S310
        return response.status, json.loads(response.read())


def test_control_surface_adds_users_changes_data_and_counts(fake_google: FakeGoogle) -> None:
    status, credentials = _post(
        fake_google.base_url + "/_fake/users", {"id": "web", "contacts": 2, "calendars": 1}
    )
    assert status == 201
    client = connect(fake_google, credentials)
    token = list_all_connections(client, requestSyncToken=True)[-1]["nextSyncToken"]

    _, changes = _post(fake_google.base_url + "/_fake/users/web/changes", {"count": 3})
    with urllib.request.urlopen(fake_google.base_url + "/_fake/counts") as response:  # noqa: S310
        counts = json.loads(response.read())
    _post(fake_google.base_url + "/_fake/users/web/revoke")

    assert len(changes["changes"]) == 3
    assert counts["by_user"]["web"] == {"oauth.token": 1, "people.connections.list": 1}
    with pytest.raises(RefreshError):
        list_all_connections(client, syncToken=token, requestSyncToken=True)


def test_cli_serve_writes_credentials_and_serves(tmp_path: Path) -> None:
    code = "from syncctl.cli.fake_google import app; app()"
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "serve",
            "--port",
            "0",
            "--users",
            "2",
            "--credentials-dir",
            str(tmp_path / "creds"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if line.startswith("export SYNCCTL_GOOGLE_ENDPOINT="):
                break
        base_url = lines[-1].strip().partition("=")[2]
        credentials = json.loads((tmp_path / "creds" / "u2.json").read_text())
        fake = FakeGoogle()
        fake.base_url = base_url  # only to build clients against the served fake
        client = connect(fake, credentials)

        pages = list_all_connections(client)

        assert pages[0]["connections"]
        assert oct((tmp_path / "creds" / "u1.json").stat().st_mode & 0o777) == "0o600"
        assert credentials["refresh_token"] not in "".join(lines)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert process.returncode == 0


def test_default_clock_follows_freezegun(fake_google: FakeGoogle) -> None:
    with freeze_time("2026-11-29 05:00:00", tz_offset=0) as frozen:
        client = connect(fake_google, fake_google.add_user("u1", contacts=2))
        token = list_all_connections(client, requestSyncToken=True)[-1]["nextSyncToken"]
        frozen.tick(timedelta(days=8))

        with pytest.raises(HttpError) as caught:
            list_all_connections(client, syncToken=token, requestSyncToken=True)

    assert caught.value.error_details[0]["reason"] == "EXPIRED_SYNC_TOKEN"
    # google-auth saw the same frozen time, so it refreshed before the call: no 401 round trip.
    assert fake_google.request_count("u1", "oauth.token") == 2
    assert fake_google.request_count("u1", "people.connections.list") == 2
