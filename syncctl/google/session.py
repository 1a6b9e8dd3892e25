"""GoogleSession: one user's authorized, counted, retried access to People, Calendar and OAuth."""

from __future__ import annotations

import copy
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, quote_plus, urlencode

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2.credentials import Credentials
from googleapiclient import errors as api_errors
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from syncctl import clock
from syncctl.config import Settings
from syncctl.google.errors import (
    AuthError,
    ClientError,
    GoogleError,
    QuotaBudgetSpent,
    QuotaError,
    TransientError,
    UnexpectedResponse,
    classify,
)
from syncctl.google.transport import CountingHttp, KeepAlivePool
from syncctl.model import UserCredentials

logger = logging.getLogger("syncctl.google")

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_TOKENINFO_URI = "https://oauth2.googleapis.com/tokeninfo"
PEOPLE_API = "People API"
CALENDAR_API = "Calendar API"
OAUTH_API = "Google OAuth"

# Calendar refuses these together with a syncToken (400); see GOOGLE_API_NOTES §2.
CALENDAR_PARAMS_FORBIDDEN_WITH_SYNC_TOKEN = frozenset(
    {
        "iCalUID",
        "orderBy",
        "privateExtendedProperty",
        "q",
        "sharedExtendedProperty",
        "timeMin",
        "timeMax",
        "updatedMin",
    }
)
# Exceptions a Google call may raise that `classify` understands; anything else is a bug.
_CALL_ERRORS = (
    api_errors.HttpError,
    auth_exceptions.GoogleAuthError,
    httplib2.HttpLib2Error,
    OSError,
    UnicodeDecodeError,
)

T = TypeVar("T")
# Per-thread cache of the client library's collection objects: building one generates every
# method and its docstring (milliseconds of CPU that, at 16 threads, saturate the GIL). They are
# built on an unauthenticated placeholder http and each request is executed with the session's
# own authorized http, so no user's credentials outlive their session in the cache.
_COLLECTIONS = threading.local()
# First-page requests kept a thread (see GoogleSession._first_request); past this, start over.
REQUEST_TEMPLATES_PER_THREAD = 4096
# A kept first-page request holds these in place of each call's own values (one template serves
# every user's calendars); the slot is all unreserved characters, so it expands as it is.
_CALENDAR_ID_SLOT = "syncctl-calendar-id-slot"
_TEMPLATE_VALUES = {"syncToken": "", "calendarId": _CALENDAR_ID_SLOT}


@functools.cache
def discovery_document(name: str, version: str) -> dict[str, Any]:
    """The discovery document bundled with google-api-python-client, parsed once per process."""
    text = get_static_doc(name, version)
    if text is None:
        raise RuntimeError(f"google-api-python-client has no bundled {name} {version} document")
    document: dict[str, Any] = json.loads(text)
    return document


class _UserCredentials(Credentials):
    """google-auth's OAuth user credentials, minus a per-request step that never does anything
    for them: before each request the base class parses the URL to decide on a Regional Access
    Boundary lookup, which user credentials never make (their
    `_is_regional_access_boundary_lookup_required` is always False). At fleet scale that parse
    was a tenth of google-auth's share of the CPU per request.

    The grant's refresh token and client secret are taken from `grant` by the first refresh,
    so an attempt that needs none never opens them (UserCredentials)."""

    grant: UserCredentials

    def _after_refresh(self, request: Any, method: str, url: str, headers: Any) -> None:
        del request, method, url, headers

    def refresh(self, request: Any) -> None:
        if self._refresh_token is None:
            self._refresh_token = self.grant.refresh_token
            self._client_secret = self.grant.client_secret
        super().refresh(request)


@dataclass(frozen=True)
class Page:
    """One page of a list call; `next_sync_token` is set on the last page of a synced listing."""

    items: list[dict[str, Any]]
    next_sync_token: str | None


class GoogleSession:
    """One user's Google access for one attempt on one thread: counted, retried, classified."""

    def __init__(
        self,
        credentials: UserCredentials,
        settings: Settings,
        *,
        now: clock.Clock = clock.utcnow,
        sleep: Callable[[float], None] = time.sleep,
        pool: KeepAlivePool | None = None,
        spend: Callable[[str], None] | None = None,
    ) -> None:
        """`pool`: keep-alive connections to reuse (else the session's own, closed with it);
        `spend(uri)`: called before every request is sent (the quota budget)."""
        self._settings = settings
        self._now = now
        self._sleep = sleep
        # Google's recommended backoff: doubling from the initial wait, plus up to 1 s of jitter.
        initial = settings.retry_initial_wait_seconds
        self._backoff = wait_exponential(
            multiplier=initial, max=settings.retry_max_wait_seconds
        ) + wait_random(0, min(1.0, initial))
        base = settings.google_endpoint.rstrip("/") if settings.google_endpoint else None
        token_uri = f"{base}/token" if base else GOOGLE_TOKEN_URI
        self._tokeninfo_uri = f"{base}/tokeninfo" if base else GOOGLE_TOKENINFO_URI
        # api_endpoint replaces rootUrl + servicePath, so Calendar's must carry calendar/v3/.
        self._people_options = {"api_endpoint": f"{base}/"} if base else None
        self._calendar_options = {"api_endpoint": f"{base}/calendar/v3/"} if base else None
        self._http = CountingHttp(
            timeout=settings.http_timeout_seconds, token_uri=token_uri, pool=pool, spend=spend
        )
        self._credentials = credentials
        self._creds = _UserCredentials(
            token=credentials.access_token,
            token_uri=token_uri,
            client_id=credentials.client_id,
            scopes=list(credentials.scopes) or None,
            expiry=self._to_auth_frame(credentials.token_expiry),
        )
        self._creds.grant = credentials
        self._authed = google_auth_httplib2.AuthorizedHttp(self._creds, http=self._http)

    # -- state the store persists -------------------------------------------------------------

    @property
    def credentials(self) -> UserCredentials:
        """The stored credentials this session started from (not updated by refreshes)."""
        return self._credentials

    @property
    def calls_made(self) -> int:
        """HTTP requests sent so far by this session, token refreshes and retries included."""
        return self._http.calls_made

    @property
    def token_refreshes(self) -> int:
        """Access tokens this session obtained (each one request of calls_made)."""
        return self._http.refreshes

    @property
    def credentials_refreshed(self) -> bool:
        """True once this session has obtained a new access token."""
        return self._http.refreshes > 0

    @property
    def access_token(self) -> str | None:
        """The current access token (persist it after a refresh)."""
        token: str | None = self._creds.token
        return token

    @property
    def token_expiry(self) -> str | None:
        """The access token's expiry as a UTC ISO string in the injected clock's frame."""
        if self._creds.expiry is None:
            return None
        # google-auth dates expiry by datetime.now (which clock.utcnow also reads, and freezegun
        # freezes); a simulator's virtual clock differs, so carry the remaining lifetime across.
        remaining = self._creds.expiry.replace(tzinfo=UTC) - clock.utcnow()
        return clock.to_iso(self._now() + remaining)

    @property
    def new_refresh_token(self) -> str | None:
        """The refresh token if Google rotated it during this session, else None."""
        current: str | None = self._creds.refresh_token  # None until a refresh
        return current if current and current != self._credentials.refresh_token else None

    def _to_auth_frame(self, expiry: str | None) -> datetime | None:
        if not expiry:
            return None
        remaining = clock.from_iso(expiry) - self._now()
        return (clock.utcnow() + remaining).astimezone(UTC).replace(tzinfo=None)

    # -- OAuth --------------------------------------------------------------------------------

    def refresh_token(self) -> None:
        """Get a new access token now; AuthError(revoked=True) on invalid_grant."""
        request = google_auth_httplib2.Request(self._http)
        self._call("token refresh", OAUTH_API, lambda: self._creds.refresh(request))

    def token_info(self) -> dict[str, Any]:
        """Google's tokeninfo for the access token, refreshing it if missing, stale or refused."""
        refreshed = not self._creds.valid
        if refreshed:
            self.refresh_token()
        try:
            return self._call("tokeninfo", OAUTH_API, self._fetch_token_info)
        except AuthError as exc:
            # Like AuthorizedHttp on a 401: a token Google no longer accepts gets one refresh.
            if exc.revoked or refreshed:
                raise
        self.refresh_token()
        return self._call("tokeninfo", OAUTH_API, self._fetch_token_info)

    def _fetch_token_info(self) -> dict[str, Any]:
        url = f"{self._tokeninfo_uri}?{urlencode({'access_token': self._creds.token})}"
        response, content = self._http.request(url, "GET")
        if response.status != 200:
            # The URI is given without its query: it holds the access token.
            raise api_errors.HttpError(response, content, uri=self._tokeninfo_uri)
        return _expect_dict(_json_or_none(content), OAUTH_API)

    # -- People -------------------------------------------------------------------------------

    def list_connections(
        self, *, sync_token: str | None, person_fields: str, page_size: int = 1000
    ) -> Iterator[Page]:
        """Pages of people/me connections: full (requesting a sync token) or incremental."""
        connections = self._collection("people", "people", "connections")
        # requestSyncToken is sent on incremental calls too: it is what makes Google return the
        # next sync token, and every call must repeat the parameters of the first one.
        params: dict[str, Any] = {
            "resourceName": "people/me",
            "personFields": person_fields,
            "pageSize": page_size,
            "requestSyncToken": True,
        }
        if sync_token:
            params["syncToken"] = sync_token
        return self._pages(
            "people.connections.list", PEOPLE_API, connections, params, "connections"
        )

    def list_contact_groups(
        self, *, sync_token: str | None, group_fields: str | None = None, page_size: int = 1000
    ) -> Iterator[Page]:
        """Pages of contact groups, all of them or only those changed since sync_token."""
        groups = self._collection("people", "contactGroups")
        params: dict[str, Any] = {"pageSize": page_size}
        if group_fields:
            params["groupFields"] = group_fields
        if sync_token:
            params["syncToken"] = sync_token
        return self._pages("contactGroups.list", PEOPLE_API, groups, params, "contactGroups")

    # -- Calendar -----------------------------------------------------------------------------

    def list_calendars(self, *, sync_token: str | None, page_size: int = 250) -> Iterator[Page]:
        """Pages of the user's calendar list, all of it or only what changed since sync_token."""
        calendar_list = self._collection("calendar", "calendarList")
        params: dict[str, Any] = {"maxResults": page_size}
        if sync_token:
            params["syncToken"] = sync_token
        return self._pages("calendarList.list", CALENDAR_API, calendar_list, params, "items")

    def list_events(
        self, calendar_id: str, *, sync_token: str | None, params: dict[str, Any] | None = None
    ) -> Iterator[Page]:
        """Pages of a calendar's events, full or incremental; params must match across both."""
        extra = dict(params or {})
        if sync_token:
            forbidden = sorted(CALENDAR_PARAMS_FORBIDDEN_WITH_SYNC_TOKEN & extra.keys())
            if forbidden:
                raise ValueError(f"events.list cannot combine syncToken with {forbidden}")
        events = self._collection("calendar", "events")
        call: dict[str, Any] = {"calendarId": calendar_id, "maxResults": 2500, **extra}
        if sync_token:
            call["syncToken"] = sync_token
        return self._pages("events.list", CALENDAR_API, events, call, "items")

    def watch_events(
        self, calendar_id: str, *, channel_id: str, address: str, token: str, ttl_seconds: int
    ) -> dict[str, Any]:
        """Open a push channel on a calendar's events; returns the Channel (expiration in ms)."""
        body = {
            "id": channel_id,
            "type": "web_hook",
            "address": address,
            "token": token,
            "params": {"ttl": str(int(ttl_seconds))},
        }
        request = self._collection("calendar", "events").watch(calendarId=calendar_id, body=body)
        channel = _expect_dict(
            self._call("events.watch", CALENDAR_API, self._executor(request)), CALENDAR_API
        )
        if channel.get("expiration") is not None:
            try:
                channel["expiration"] = int(channel["expiration"])
            except (TypeError, ValueError):
                raise UnexpectedResponse(
                    f"{CALENDAR_API} sent a channel with an unreadable expiration"
                ) from None
        return channel

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """Stop a push channel; a channel Google no longer knows (404) counts as stopped."""
        channels = self._collection("calendar", "channels")
        request = channels.stop(body={"id": channel_id, "resourceId": resource_id})
        try:
            self._call("channels.stop", CALENDAR_API, self._executor(request))
        except UnexpectedResponse as exc:
            if exc.status != 404:
                raise

    # -- plumbing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the session's connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _collection(self, api: str, *path: str) -> Any:
        """This thread's cached collection (e.g. calendar events) for the session's endpoint."""
        options = self._people_options if api == "people" else self._calendar_options
        key = (api, repr(options), path)
        cache: dict[tuple, Any] = _COLLECTIONS.__dict__.setdefault("cache", {})
        collection = cache.get(key)
        if collection is None:
            version = "v1" if api == "people" else "v3"
            collection = build_from_document(
                discovery_document(api, version), http=httplib2.Http(), client_options=options
            )
            for name in path:
                collection = getattr(collection, name)()
            cache[key] = collection
        return collection

    def _executor(self, request: Any) -> Callable[[], Any]:
        """Run a built request over this session's authorized, counted http."""
        return lambda: request.execute(http=self._authed)

    def _pages(
        self, label: str, api: str, collection: Any, params: dict[str, Any], items_key: str
    ) -> Iterator[Page]:
        # list_next re-uses the first request's URI and only swaps pageToken, so every page
        # repeats the first call's parameters, as People and Calendar require.
        request = _first_request(collection, params)
        while request is not None:
            response = _expect_dict(self._call(label, api, self._executor(request)), api)
            items = response.get(items_key) or []
            if not isinstance(items, list):
                raise UnexpectedResponse(f"{api} sent a page whose {items_key} is not a list")
            sync_token = response.get("nextSyncToken")
            yield Page(items=items, next_sync_token=str(sync_token) if sync_token else None)
            request = collection.list_next(request, response)

    def _call(self, label: str, api: str, action: Callable[[], T]) -> T:
        """Run one Google call under the retry policy, raising only classified GoogleErrors."""
        # The first try runs outside tenacity: nearly every call succeeds at once, and tenacity's
        # bookkeeping cost as much CPU as the request itself (benchmarks/bench_fleet.py).
        try:
            return self._attempt(api, action)
        except GoogleError as exc:
            if self._settings.retry_max_attempts <= 1 or not self._should_retry(exc):
                raise
            first_failure = exc
        wait = self._wait_after(1, first_failure)
        self._log_failure(label, first_failure, 1, wait)
        self._sleep(wait)
        retrying = Retrying(  # attempts 2..N: tenacity's attempt k is the session's k + 1
            stop=stop_after_attempt(self._settings.retry_max_attempts - 1),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            sleep=self._sleep,
            before_sleep=functools.partial(self._log_retry, label),
            reraise=True,
        )
        return retrying(self._attempt, api, action)

    def _attempt(self, api: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except GoogleError as exc:
            raise self._failed_at(api, exc, token_endpoint=False) from None
        except _CALL_ERRORS as exc:
            # A refresh error is the token endpoint's, whichever call triggered the refresh.
            token_endpoint = self._http.last_was_token_request or isinstance(
                exc, auth_exceptions.RefreshError | auth_exceptions.TransportError
            )
            # `from None`: the library exception may carry URIs or bodies we do not show.
            raise self._failed_at(api, classify(exc, api=api), token_endpoint) from None

    def _failed_at(self, api: str, exc: GoogleError, token_endpoint: bool) -> GoogleError:
        if exc.api is None:
            exc.api = OAUTH_API if token_endpoint or isinstance(exc, ClientError) else api
        if isinstance(exc, ClientError):
            exc.client_id = self._credentials.client_id
        return self._redact(exc)

    def _should_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, QuotaError | TransientError) or isinstance(exc, QuotaBudgetSpent):
            return False
        # A Retry-After longer than our longest wait is a deferral, not something to sleep on.
        return exc.retry_after is None or exc.retry_after <= self._settings.retry_max_wait_seconds

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self._wait_after(state.attempt_number + 1, exc)

    def _wait_after(self, attempt: int, exc: BaseException | None) -> float:
        """Google's backoff after the session's `attempt`-th try, or its Retry-After if longer."""
        backoff = min(self._backoff(_AttemptNumber(attempt)), self._settings.retry_max_wait_seconds)
        retry_after = getattr(exc, "retry_after", None) or 0.0
        return max(backoff, retry_after)

    def _log_retry(self, label: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self._log_failure(label, exc, state.attempt_number + 1, wait)

    def _log_failure(
        self, label: str, exc: BaseException | None, attempt: int, wait: float
    ) -> None:
        logger.info(
            "%s failed (%s); retry %d of %d in %.1f s",
            label,
            exc,
            attempt,
            self._settings.retry_max_attempts - 1,
            wait,
        )

    def _redact(self, exc: GoogleError) -> GoogleError:
        message = exc.message
        grant = self._credentials  # secrets never opened cannot be in any message
        opened = (grant.client_secret, grant.refresh_token) if grant.opened else ()
        for secret in (*opened, grant.access_token, self._creds.token, self._creds.refresh_token):
            if secret and secret in message:
                message = message.replace(secret, "<redacted>")
        if message != exc.message:
            exc.args = (message,)
        return exc


def _first_request(collection: Any, params: dict[str, Any]) -> Any:
    """The request for a listing's first page. The library builds it once per collection and
    parameters a thread (validation and URI templating cost more than the rest of the request's
    preparation), with an empty sync token where there is one and a placeholder calendar id;
    each call gets a copy with its own calendar id set in the path and its sync token in the
    query, the way the library's own list_next swaps in the page token."""
    shape = {name: _TEMPLATE_VALUES.get(name, value) for name, value in params.items()}
    templates: dict[tuple, Any] = _COLLECTIONS.__dict__.setdefault("templates", {})
    key = (collection, tuple(shape.items()))
    template = templates.get(key)
    if template is None:
        if len(templates) >= REQUEST_TEMPLATES_PER_THREAD:
            templates.clear()
        template = templates[key] = collection.list(**shape)
    request = copy.copy(template)
    request.headers = dict(template.headers)  # execute may add to them
    uri = template.uri
    if "calendarId" in params:
        uri = with_path_segment(uri, _CALENDAR_ID_SLOT, str(params["calendarId"]))
    if "syncToken" in params:
        uri = with_query_value(uri, "syncToken", str(params["syncToken"]))
    request.uri = uri
    return request


def with_path_segment(uri: str, slot: str, value: str) -> str:
    """`uri` with the path segment `slot` replaced by `value`, percent-encoded as the client
    library's URI template expands a path parameter (every byte but unreserved ones)."""
    path, mark, query = uri.partition("?")
    segment = f"/{slot}/"
    if segment not in path:
        raise ValueError(f"the URI has no {slot} path segment to set")
    return path.replace(segment, f"/{quote(value, safe='')}/", 1) + mark + query


def with_query_value(uri: str, name: str, value: str) -> str:
    """`uri` with the value of its query parameter `name` set to `value`, encoded as the client
    library's urlencode encodes it, every other byte unchanged."""
    base, mark, query = uri.partition("?")
    prefix = f"{quote_plus(name)}="
    fields = query.split("&") if mark else []
    for index, field in enumerate(fields):
        if field.startswith(prefix):
            fields[index] = prefix + quote_plus(value)
            return f"{base}?{'&'.join(fields)}"
    raise ValueError(f"the URI has no {name} parameter to set")


@dataclass(frozen=True)
class _AttemptNumber:
    """What tenacity's wait strategies read of a RetryCallState: the attempt that just failed."""

    attempt_number: int


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def _expect_dict(value: Any, api: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnexpectedResponse(f"{api} sent a response that is not a JSON object")
    return value
