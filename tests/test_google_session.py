"""GoogleSession against the fake Google over loopback, with the real client libraries."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httplib2
import pytest
from freezegun import freeze_time
from googleapiclient.discovery import build_from_document

from syncctl.clock import from_iso, to_iso
from syncctl.config import Settings
from syncctl.google import (
    AuthError,
    GoogleError,
    GoogleSession,
    QuotaError,
    SyncTokenExpired,
    TransientError,
    UnexpectedResponse,
)
from syncctl.google.session import (
    _COLLECTIONS,
    _first_request,
    discovery_document,
    with_path_segment,
    with_query_value,
)
from syncctl.model import UserCredentials

PERSON_FIELDS = "names,emailAddresses,metadata"


class RecordingSleep:
    """A sleep that only records what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def credentials_from(info: dict[str, Any], *, with_token: bool = True) -> UserCredentials:
    """UserCredentials from the fake's authorized-user dict (optionally without an access token)."""
    scopes = info.get("scopes") or ()
    if isinstance(scopes, str):
        scopes = scopes.split()
    return UserCredentials(
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        refresh_token=info["refresh_token"],
        access_token=info.get("token") if with_token else None,
        token_expiry=info.get("expiry") if with_token else None,
        scopes=tuple(scopes),
    )


def settings_for(base_url: str, **changes: Any) -> Settings:
    """Fast-retrying settings pointed at the fake."""
    values: dict[str, Any] = {
        "google_endpoint": base_url,
        "retry_max_attempts": 5,
        "retry_initial_wait_seconds": 0.01,
        "retry_max_wait_seconds": 5.0,
        "http_timeout_seconds": 5.0,
    }
    values.update(changes)
    return Settings(**values)


@pytest.fixture
def session_for(fake_google: Any) -> Callable[..., GoogleSession]:
    """Make a session for a user of the fake; extra keywords go to Settings."""
    made: list[GoogleSession] = []

    def make(
        info: dict[str, Any],
        *,
        with_token: bool = True,
        sleep: Callable[[float], None] | None = None,
        now: Callable[[], datetime] | None = None,
        **changes: Any,
    ) -> GoogleSession:
        kwargs: dict[str, Any] = {"sleep": sleep or RecordingSleep()}
        if now is not None:
            kwargs["now"] = now
        session = GoogleSession(
            credentials_from(info, with_token=with_token),
            settings_for(fake_google.base_url, **changes),
            **kwargs,
        )
        made.append(session)
        return session

    yield make
    for session in made:
        session.close()


def all_items(pages: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Drain a page iterator: every item and the last page's sync token."""
    items: list[dict[str, Any]] = []
    token = None
    for page in pages:
        items.extend(page.items)
        token = page.next_sync_token
    return items, token


# -- reaching the fake ----------------------------------------------------------------------------


def test_people_and_calendar_reach_the_fake_through_the_endpoint_override(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=3, groups=2, calendars=2, events_per_calendar=4)
    session = session_for(info)

    people, people_token = all_items(
        session.list_connections(sync_token=None, person_fields=PERSON_FIELDS)
    )
    groups, _ = all_items(session.list_contact_groups(sync_token=None))
    calendars, calendars_token = all_items(session.list_calendars(sync_token=None))
    events, events_token = all_items(session.list_events(calendars[0]["id"], sync_token=None))

    assert len(people) == 3 and people_token
    assert len([g for g in groups if g.get("groupType") == "USER_CONTACT_GROUP"]) == 2
    assert len(calendars) == 2 and calendars_token
    assert len(events) == 4 and events_token
    assert fake_google.request_count(user_id="u1", endpoint="people.connections.list") == 1
    assert fake_google.request_count(user_id="u1", endpoint="calendar.events.list") == 1


def test_incremental_people_sync_returns_only_changes_and_a_new_token(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=3, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info)
    _, token = all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))

    changed, next_token = all_items(
        session.list_connections(sync_token=token, person_fields=PERSON_FIELDS)
    )

    assert changed == []
    assert next_token


def test_pages_are_fetched_lazily_as_the_caller_streams(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=25, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info)

    pages = session.list_connections(sync_token=None, person_fields=PERSON_FIELDS, page_size=10)
    first = next(pages)

    assert len(first.items) == 10 and first.next_sync_token is None
    assert fake_google.request_count(user_id="u1", endpoint="people.connections.list") == 1
    rest = list(pages)
    assert [len(p.items) for p in rest] == [10, 5]
    assert rest[-1].next_sync_token


# -- retries ----------------------------------------------------------------------------------


def test_a_429_with_retry_after_is_retried_after_that_wait(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=2, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info, sleep=time.sleep)
    fake_google.fail_next(429, count=1, user_id="u1", retry_after=2)

    started = time.monotonic()
    people, _ = all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))
    elapsed = time.monotonic() - started

    assert len(people) == 2
    assert 1.9 <= elapsed < 5
    assert fake_google.request_count(user_id="u1", endpoint="people.connections.list") == 2


def test_a_503_burst_is_retried_with_backoff_and_succeeds(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=1, events_per_calendar=3)
    sleep = RecordingSleep()
    session = session_for(info, sleep=sleep, retry_initial_wait_seconds=1.0)
    fake_google.fail_next(503, count=3, user_id="u1")

    calendars, _ = all_items(session.list_calendars(sync_token=None))

    assert len(calendars) == 1
    assert len(sleep.waits) == 3
    # exponential with at most 1 s of jitter: 1-2, 2-3, 4-5 s
    assert [int(w) for w in sleep.waits] == [1, 2, 4]
    assert fake_google.request_count(user_id="u1", endpoint="calendar.calendarList.list") == 4


def test_a_404_is_not_retried(fake_google: Any, session_for: Callable[..., GoogleSession]) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=1, events_per_calendar=1)
    sleep = RecordingSleep()
    session = session_for(info, sleep=sleep)

    with pytest.raises(UnexpectedResponse) as raised:
        all_items(session.list_events("no-such-calendar@example.com", sync_token=None))

    assert raised.value.status == 404
    assert sleep.waits == []
    assert fake_google.request_count(user_id="u1", endpoint="calendar.events.list") == 1


def test_quota_exhaustion_raises_quota_error_with_retry_after(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=1, groups=0, calendars=0, events_per_calendar=0)
    sleep = RecordingSleep()
    session = session_for(info, sleep=sleep, retry_max_attempts=3)
    fake_google.fail_next(429, count=10, user_id="u1", retry_after=3)

    with pytest.raises(QuotaError) as raised:
        all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))

    assert raised.value.retry_after == 3.0
    assert raised.value.status == 429
    assert sleep.waits == [3.0, 3.0]
    assert fake_google.request_count(user_id="u1", endpoint="people.connections.list") == 3


def test_a_403_rate_limit_reason_is_quota_and_retried(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=1, events_per_calendar=0)
    sleep = RecordingSleep()
    session = session_for(info, sleep=sleep)
    fake_google.fail_next(403, count=1, user_id="u1", reason="userRateLimitExceeded")

    calendars, _ = all_items(session.list_calendars(sync_token=None))

    assert len(calendars) == 1
    assert len(sleep.waits) == 1


def test_a_retry_after_beyond_the_longest_wait_is_raised_at_once_for_deferral(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=1, groups=0, calendars=0, events_per_calendar=0)
    sleep = RecordingSleep()
    session = session_for(info, sleep=sleep, retry_max_wait_seconds=30.0)
    fake_google.fail_next(429, count=1, user_id="u1", retry_after=600)

    with pytest.raises(QuotaError) as raised:
        all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))

    assert raised.value.retry_after == 600.0
    assert sleep.waits == []


def test_a_token_endpoint_outage_is_retried_with_the_injected_sleep(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=0, events_per_calendar=0)
    sleep = RecordingSleep()
    session = session_for(info, with_token=False, sleep=sleep)
    fake_google.fail_next(503, count=2, user_id="u1", endpoint="oauth.token")

    started = time.monotonic()
    session.refresh_token()

    assert time.monotonic() - started < 1.0  # google-auth's own real-sleep retry never ran
    assert len(sleep.waits) == 2
    assert session.credentials_refreshed
    assert session.calls_made == 3 == fake_google.request_count(user_id="u1")


def test_a_persistent_token_endpoint_outage_is_transient_not_an_auth_verdict(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info, with_token=False, retry_max_attempts=2)
    fake_google.fail_next(500, count=5, user_id="u1", endpoint="oauth.token")

    with pytest.raises(TransientError) as raised:
        session.refresh_token()

    assert raised.value.status == 500
    assert session.calls_made == 2


def test_a_refused_connection_is_transient_after_the_retries_and_never_an_api_call() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    credentials = UserCredentials(client_id="c", client_secret="s", refresh_token="r")
    sleep = RecordingSleep()
    session = GoogleSession(
        credentials,
        settings_for(f"http://127.0.0.1:{port}", retry_max_attempts=3),
        sleep=sleep,
    )

    with pytest.raises(TransientError) as raised:
        all_items(session.list_calendars(sync_token=None))

    # Nothing left the machine: retried, but not one request counted as sent to Google.
    assert session.calls_made == 0
    assert len(sleep.waits) == 2
    assert raised.value.api == "Google OAuth"  # the refresh it needed first could not connect


def test_a_slow_response_times_out_as_transient(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=1, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info, http_timeout_seconds=0.2, retry_max_attempts=1)
    fake_google.set_latency(0.6)

    with pytest.raises(TransientError):
        all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))


# -- counting ---------------------------------------------------------------------------------


def test_calls_made_matches_the_fake_after_a_multi_page_sync_with_a_refresh(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=35, groups=3, calendars=0, events_per_calendar=0)
    session = session_for(info, with_token=False)

    people, _ = all_items(
        session.list_connections(sync_token=None, person_fields=PERSON_FIELDS, page_size=10)
    )
    all_items(session.list_contact_groups(sync_token=None))

    assert len(people) == 35
    assert session.credentials_refreshed
    assert fake_google.request_count(user_id="u1", endpoint="oauth.token") == 1
    assert session.calls_made == 6 == fake_google.request_count(user_id="u1")


def test_an_expired_access_token_is_refreshed_and_the_refresh_is_counted(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=2, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info)
    session.refresh_token()
    old_token = session.access_token
    fake_google.expire_access_tokens("u1")
    before = fake_google.request_count(user_id="u1")

    people, _ = all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))

    assert len(people) == 2
    assert session.access_token != old_token
    # the 401, the refresh, the retried call
    assert fake_google.request_count(user_id="u1") - before == 3
    assert session.calls_made == fake_google.request_count(user_id="u1")


# -- auth -------------------------------------------------------------------------------------


def test_a_revoked_grant_is_an_auth_error_marked_revoked(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=1, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info, with_token=False)
    fake_google.revoke("u1")

    with pytest.raises(AuthError) as raised:
        session.refresh_token()

    assert raised.value.revoked is True
    assert session.calls_made == 1


def test_a_revoked_grant_met_mid_sync_is_an_auth_error_marked_revoked(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=1, groups=0, calendars=1, events_per_calendar=0)
    session = session_for(info)
    session.refresh_token()
    fake_google.revoke("u1")

    with pytest.raises(AuthError) as raised:
        all_items(session.list_calendars(sync_token=None))

    assert raised.value.revoked is True


def test_a_401_that_refreshes_cannot_cure_is_an_auth_error_not_a_revocation(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=1, events_per_calendar=0)
    sleep = RecordingSleep()
    session = session_for(info, sleep=sleep)
    fake_google.fail_next(401, count=3, user_id="u1", endpoint="calendar.calendarList.list")

    with pytest.raises(AuthError) as raised:
        all_items(session.list_calendars(sync_token=None))

    assert raised.value.revoked is False
    assert raised.value.status == 401
    assert sleep.waits == []
    # first token, then google-auth's two refresh-and-retry rounds after a 401
    assert fake_google.request_count(user_id="u1", endpoint="oauth.token") == 3
    assert session.calls_made == 6 == fake_google.request_count(user_id="u1")


def test_a_missing_scope_is_an_auth_error(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user(
        "u1",
        contacts=1,
        groups=0,
        calendars=1,
        events_per_calendar=0,
        scopes=["https://www.googleapis.com/auth/contacts.readonly"],
    )
    session = session_for(info)

    with pytest.raises(AuthError) as raised:
        all_items(session.list_calendars(sync_token=None))

    assert raised.value.status == 403
    assert raised.value.revoked is False


def test_token_info_describes_the_access_token(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info, with_token=False)

    described = session.token_info()

    assert "contacts" in described["scope"]
    assert int(described["expires_in"]) > 0
    assert fake_google.request_count(user_id="u1", endpoint="oauth.tokeninfo") == 1


def test_token_info_refreshes_a_token_google_no_longer_accepts(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info)
    session.refresh_token()
    fake_google.expire_access_tokens("u1")

    described = session.token_info()

    assert int(described["expires_in"]) > 0
    assert fake_google.request_count(user_id="u1", endpoint="oauth.tokeninfo") == 2
    assert fake_google.request_count(user_id="u1", endpoint="oauth.token") == 2


# -- sync tokens ------------------------------------------------------------------------------


def test_an_expired_people_sync_token_is_sync_token_expired(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=2, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info)
    _, token = all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))
    fake_google.expire_sync_tokens("u1")

    with pytest.raises(SyncTokenExpired) as raised:
        all_items(session.list_connections(sync_token=token, person_fields=PERSON_FIELDS))

    assert raised.value.status == 400


def test_an_expired_calendar_sync_token_is_sync_token_expired(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=1, events_per_calendar=2)
    session = session_for(info)
    calendars, _ = all_items(session.list_calendars(sync_token=None))
    _, token = all_items(session.list_events(calendars[0]["id"], sync_token=None))
    fake_google.expire_sync_tokens("u1")

    with pytest.raises(SyncTokenExpired) as raised:
        all_items(session.list_events(calendars[0]["id"], sync_token=token))

    assert raised.value.status == 410


def test_event_filters_google_refuses_with_a_sync_token_are_rejected_before_any_call(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=1, events_per_calendar=0)
    session = session_for(info)

    with pytest.raises(ValueError, match="timeMin"):
        session.list_events("primary", sync_token="abc", params={"timeMin": "2026-01-01T00:00Z"})

    assert session.calls_made == 0


# -- push channels ----------------------------------------------------------------------------


def test_a_watch_channel_opens_and_stops(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=1, events_per_calendar=0)
    session = session_for(info)

    channel = session.watch_events(
        "primary",
        channel_id="chan-1",
        address="https://127.0.0.1:9/hook",
        token="chan-secret",
        ttl_seconds=3600,
    )
    session.stop_channel(channel["id"], channel["resourceId"])
    session.stop_channel(channel["id"], channel["resourceId"])  # already gone: no error

    assert channel["id"] == "chan-1"
    assert isinstance(channel["expiration"], int)
    assert fake_google.request_count(user_id="u1", endpoint="calendar.channels.stop") == 2


# -- clocks -----------------------------------------------------------------------------------


def test_token_expiry_is_expressed_in_the_injected_clock(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    virtual_now = datetime(2020, 1, 1, tzinfo=UTC)
    info = fake_google.add_user("u1", contacts=0, groups=0, calendars=0, events_per_calendar=0)
    session = session_for(info, with_token=False, now=lambda: virtual_now)

    session.refresh_token()

    assert session.token_expiry is not None
    remaining = from_iso(session.token_expiry) - virtual_now
    assert timedelta(minutes=55) < remaining <= timedelta(hours=1)


def test_a_stored_expiry_is_read_in_the_injected_clock(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    virtual_now = datetime(2020, 1, 1, tzinfo=UTC)
    info = fake_google.add_user("u1", contacts=1, groups=0, calendars=0, events_per_calendar=0)
    fresh = session_for(info, with_token=False)
    fresh.refresh_token()
    stored = dict(info, token=fresh.access_token, expiry=to_iso(virtual_now + timedelta(hours=1)))
    session = session_for(stored, now=lambda: virtual_now)

    all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))

    # valid for another hour by the virtual clock, so no refresh although 2020 is long past
    assert not session.credentials_refreshed
    assert session.calls_made == 1


def test_token_expiry_under_freezegun_is_the_frozen_time_plus_the_lifetime(
    fake_google: Any, session_for: Callable[..., GoogleSession]
) -> None:
    info = fake_google.add_user("u1", contacts=1, groups=0, calendars=0, events_per_calendar=0)
    with freeze_time("2026-03-01 12:00:00"):
        session = session_for(info)
        all_items(session.list_connections(sync_token=None, person_fields=PERSON_FIELDS))

        assert session.token_expiry == "2026-03-01T12:59:59+00:00"
        assert session.calls_made == 2


# -- secrets ----------------------------------------------------------------------------------


def test_no_credential_appears_in_errors_or_logs(
    fake_google: Any, session_for: Callable[..., GoogleSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    info = fake_google.add_user("u1", contacts=1, groups=0, calendars=1, events_per_calendar=1)
    texts: list[str] = []
    secrets: set[str] = {info["client_secret"], info["refresh_token"]}

    def capture(session: GoogleSession, action: Callable[[], Any]) -> None:
        try:
            action()
        except GoogleError as exc:
            texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc))])
        if session.access_token:
            secrets.add(session.access_token)

    session = session_for(info, retry_max_attempts=2)
    fake_google.fail_next(429, count=2, user_id="u1", retry_after=0)
    capture(session, lambda: all_items(session.list_calendars(sync_token=None)))
    fake_google.fail_next(503, count=2, user_id="u1")
    capture(session, lambda: all_items(session.list_calendars(sync_token=None)))
    capture(session, lambda: all_items(session.list_events("missing", sync_token=None)))
    capture(session, lambda: all_items(session.list_events("primary", sync_token="bogus")))
    capture(session, session.token_info)
    fake_google.fail_next(401, count=3, user_id="u1", endpoint="calendar.calendarList.list")
    capture(session, lambda: all_items(session.list_calendars(sync_token=None)))
    fake_google.fail_next(403, count=1, user_id="u1", reason="insufficientPermissions")
    capture(session, lambda: all_items(session.list_calendars(sync_token=None)))
    fake_google.fail_next(503, count=2, user_id="u1", endpoint="oauth.token")
    capture(session, session.refresh_token)
    fake_google.revoke("u1")
    capture(session, session.refresh_token)
    capture(session, lambda: all_items(session.list_calendars(sync_token=None)))

    assert len(texts) == 3 * 9  # every failure above raised
    everything = "\n".join(texts) + "\n" + caplog.text
    assert "retry 1 of 1" in caplog.text
    for secret in secrets:
        assert secret not in everything


def _library_collection(api: str, *path: str) -> Any:
    version = "v1" if api == "people" else "v3"
    base = "http://127.0.0.1:1/" if api == "people" else "http://127.0.0.1:1/calendar/v3/"
    collection = build_from_document(
        discovery_document(api, version),
        http=httplib2.Http(),
        client_options={"api_endpoint": base},
    )
    for name in path:
        collection = getattr(collection, name)()
    return collection


_EVENTS = ("calendar", "events")
_CONNECTIONS = ("people", "people", "connections")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (_EVENTS, {"calendarId": "primary", "maxResults": 2500}),
        (_EVENTS, {"calendarId": "u1@example.com", "maxResults": 2500, "syncToken": "CPD=/+ x"}),
        (_EVENTS, {"calendarId": "c_1@group.calendar.google.com", "syncToken": "t&a=b?c#d"}),
        (_EVENTS, {"calendarId": "ünï/cødé", "maxResults": 10, "showDeleted": True}),
        (_EVENTS, {"calendarId": "a b+c%d#e?f&g=h/../x", "maxResults": 2500, "syncToken": "t"}),
        (_EVENTS, {"calendarId": "syncctl-calendar-id-slot", "maxResults": 2500}),
        (_EVENTS, {"calendarId": "primary", "singleEvents": True, "syncToken": "x" * 300}),
        (
            _CONNECTIONS,
            {
                "resourceName": "people/me",
                "personFields": PERSON_FIELDS,
                "pageSize": 1000,
                "requestSyncToken": True,
                "syncToken": "EgYI/+ü=",
            },
        ),
        (_CONNECTIONS, {"resourceName": "people/me", "personFields": "names", "pageSize": 5}),
        (("calendar", "calendarList"), {"maxResults": 250, "syncToken": "abc"}),
        (("calendar", "calendarList"), {"syncToken": "first", "maxResults": 250}),
        (("people", "contactGroups"), {"pageSize": 1000, "groupFields": "name,memberCount"}),
        (("people", "contactGroups"), {"pageSize": 3, "syncToken": "g~1 2%3"}),
    ],
)
def test_a_first_page_request_is_the_one_the_library_builds(path: tuple, params: dict) -> None:
    """The derived request (a copy of a kept template with the sync token swapped in) asks for
    byte for byte the URI `collection.list(**params)` builds, twice running."""
    collection = _library_collection(*path)
    built = collection.list(**params)
    for _ in range(2):
        derived = _first_request(collection, params)
        assert derived.uri == built.uri
        assert (derived.method, derived.body, derived.methodId) == (
            built.method,
            built.body,
            built.methodId,
        )
        assert derived.headers == built.headers
        assert derived.headers is not built.headers


def test_one_kept_request_serves_every_calendar_id() -> None:
    """Users' calendars differ only in the calendar id: after the first, no request is built by
    the library again, and each asks for its own calendar."""
    collection = _library_collection(*_EVENTS)
    ids = ["u1@example.com", "u2@example.com", "c_9@group.calendar.google.com", "é è"]
    _first_request(collection, {"calendarId": ids[0], "maxResults": 2500, "syncToken": "s"})
    kept = dict(_COLLECTIONS.templates)
    for calendar_id in ids:
        params = {"calendarId": calendar_id, "maxResults": 2500, "syncToken": f"s-{calendar_id}"}
        assert _first_request(collection, params).uri == collection.list(**params).uri
    assert _COLLECTIONS.templates == kept


@pytest.mark.parametrize(
    ("uri", "slot", "value", "expected"),
    [
        (
            "http://h/c/v3/calendars/S/events?a=1",
            "S",
            "x@y.com",
            "http://h/c/v3/calendars/x%40y.com/events?a=1",
        ),
        ("http://h/calendars/S/events", "S", "a/b c", "http://h/calendars/a%2Fb%20c/events"),
        ("http://h/calendars/S/events?q=/S/", "S", "v", "http://h/calendars/v/events?q=/S/"),
    ],
)
def test_a_path_segment_is_set_and_encoded_as_the_uri_template_does(
    uri: str, slot: str, value: str, expected: str
) -> None:
    assert with_path_segment(uri, slot, value) == expected


@pytest.mark.parametrize("uri", ["http://h/calendars/x/events", "http://h/p?q=/S/"])
def test_setting_a_path_segment_the_uri_lacks_is_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="no S path segment"):
        with_path_segment(uri, "S", "v")


@pytest.mark.parametrize(
    ("uri", "name", "value", "expected"),
    [
        (
            "http://h/p?a=1&syncToken=&alt=json",
            "syncToken",
            "t",
            "http://h/p?a=1&syncToken=t&alt=json",
        ),
        (
            "http://h/p?syncToken=old&alt=json",
            "syncToken",
            "new",
            "http://h/p?syncToken=new&alt=json",
        ),
        (
            "http://h/p?a=1&syncToken=",
            "syncToken",
            "a+b/c=d&e",
            "http://h/p?a=1&syncToken=a%2Bb%2Fc%3Dd%26e",
        ),
        (
            "http://h/p?syncToken=&alt=json",
            "syncToken",
            "ü x",
            "http://h/p?syncToken=%C3%BC+x&alt=json",
        ),
        (
            "http://h/p?xsyncToken=1&syncToken=&alt=json",
            "syncToken",
            "t",
            "http://h/p?xsyncToken=1&syncToken=t&alt=json",
        ),
        (
            "http://h/p?q=syncToken%3D&syncToken=",
            "syncToken",
            "t",
            "http://h/p?q=syncToken%3D&syncToken=t",
        ),
    ],
)
def test_a_query_value_is_set_in_place_and_encoded_as_urlencode_does(
    uri: str, name: str, value: str, expected: str
) -> None:
    assert with_query_value(uri, name, value) == expected


@pytest.mark.parametrize(
    "uri", ["http://h/p", "http://h/p?a=1&alt=json", "http://h/p?xsyncToken=1"]
)
def test_setting_a_query_value_the_uri_lacks_is_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="no syncToken parameter"):
        with_query_value(uri, "syncToken", "t")
