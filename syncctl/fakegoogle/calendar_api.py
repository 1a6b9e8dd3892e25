"""Calendar API v3: calendarList.list, events.list, events.watch and channels.stop."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from syncctl.fakegoogle import errors
from syncctl.fakegoogle.channels import Channel
from syncctl.fakegoogle.errors import Reply
from syncctl.fakegoogle.listing import Listing, page, page_size
from syncctl.fakegoogle.records import Collection, Event
from syncctl.fakegoogle.render import calendar_etag, render_calendar, render_event, rfc3339
from syncctl.fakegoogle.state import (
    CALENDAR_LIST_SCOPES,
    EVENTS_SCOPES,
    ApiRequest,
    FakeState,
)

# Calendar's events.list refuses these together with a syncToken (GOOGLE_API_NOTES section 2).
NOT_WITH_SYNC_TOKEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
DEFAULT_CHANNEL_TTL = 604800
MAX_CHANNEL_TTL = 604800  # Calendar's real maximum is unconfirmed; a week keeps renewal honest.
STOP_SCOPES = CALENDAR_LIST_SCOPES | EVENTS_SCOPES


def _bad_page_token() -> errors.ApiError:
    return errors.calendar_bad_request("Invalid page token value.", location="pageToken")


def _reject_with_sync_token(
    request: ApiRequest, names: tuple[str, ...], must_not_be_false: tuple[str, ...]
) -> None:
    if request.param("syncToken") is None:
        return
    for name in names:
        if request.param(name) is not None:
            raise errors.calendar_bad_request(
                f"The parameter {name} cannot be used together with syncToken.", location=name
            )
    for name in must_not_be_false:
        if request.flag(name) is False:
            raise errors.calendar_bad_request(
                f"{name}=false is not allowed together with syncToken.", location=name
            )


def list_calendars(state: FakeState, request: ApiRequest) -> Reply:
    """GET /calendar/v3/users/me/calendarList."""
    with state.lock:
        user = state.authenticate(
            request, "calendar", CALENDAR_LIST_SCOPES, "calendar.calendarList.list"
        )
        _reject_with_sync_token(
            request, ("minAccessRole", "showOwnOrganizationOnly"), ("showDeleted", "showHidden")
        )
        size = page_size(
            request,
            "maxResults",
            default=100,
            maximum=250,
            clamp=True,
            error=errors.calendar_bad_request,
        )
        show_deleted = bool(request.flag("showDeleted"))
        listing = Listing(
            scope="calendarList",
            full_keys=user.calendars.all_keys if show_deleted else user.calendars.live_keys,
            changed_since=user.calendars.changed_since,
            expired=errors.full_sync_required,
            bad_page_token=_bad_page_token,
            signature=(str(show_deleted),),
        )
        result = page(state, request, user, listing, size)
        items = []
        for key in result.keys:
            calendar = user.calendars.get(key)
            if calendar is None or (calendar.deleted and not (result.incremental or show_deleted)):
                continue
            items.append(render_calendar(calendar))
        body: dict[str, Any] = {
            "kind": "calendar#calendarList",
            "etag": calendar_etag("calendarList:" + user.user_id, user.seq),
        }
        _finish(state, body, result.next_page_token, user.user_id, "calendarList", result.start_seq)
        body["items"] = items
    return Reply(200, body)


def _finish(
    state: FakeState,
    body: dict[str, Any],
    next_page_token: str | None,
    user_id: str,
    scope: str,
    start_seq: int,
) -> None:
    # Calendar: nextPageToken XOR nextSyncToken.
    if next_page_token:
        body["nextPageToken"] = next_page_token
    else:
        body["nextSyncToken"] = state.sync_tokens.issue(user_id, scope, start_seq, state.now())


def _parse_time(request: ApiRequest, name: str) -> datetime | None:
    text = request.param(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise errors.calendar_bad_request(f"Bad Request: invalid {name}", location=name)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class _EventQuery:
    show_deleted: bool
    time_min: datetime | None
    time_max: datetime | None
    updated_min: datetime | None
    text: str | None
    ical_uid: str | None
    order_by: str | None

    @classmethod
    def from_request(cls, request: ApiRequest) -> _EventQuery:
        order_by = request.param("orderBy")
        if order_by not in (None, "startTime", "updated"):
            raise errors.calendar_bad_request(
                f"Invalid value for orderBy: {order_by}", location="orderBy"
            )
        if order_by == "startTime" and not request.flag("singleEvents"):
            raise errors.calendar_bad_request(
                "The requested ordering is not available for the particular query.",
                location="orderBy",
            )
        text = request.param("q")
        return cls(
            show_deleted=bool(request.flag("showDeleted")),
            time_min=_parse_time(request, "timeMin"),
            time_max=_parse_time(request, "timeMax"),
            updated_min=_parse_time(request, "updatedMin"),
            text=text.lower() if text else None,
            ical_uid=request.param("iCalUID"),
            order_by=order_by,
        )

    @property
    def signature(self) -> tuple[str, ...]:
        return tuple(
            map(
                str,
                (
                    self.show_deleted,
                    self.time_min,
                    self.time_max,
                    self.updated_min,
                    self.text,
                    self.ical_uid,
                    self.order_by,
                ),
            )
        )

    def keys(self, events: Collection[Event]) -> list[str]:
        # Cancelled events appear with showDeleted or updatedMin (Event.status description).
        with_cancelled = self.show_deleted or self.updated_min is not None
        chosen = [
            event
            for event in events.records()
            if (with_cancelled or not event.deleted)
            and (self.time_min is None or event.end > self.time_min)
            and (self.time_max is None or event.start < self.time_max)
            and (self.updated_min is None or event.updated >= self.updated_min)
            and (self.text is None or self.text in event.summary.lower())
            and (self.ical_uid is None or self.ical_uid == f"{event.event_id}@google.com")
        ]
        if self.order_by == "startTime":
            chosen.sort(key=lambda event: (event.start, event.event_id))
        return [event.event_id for event in chosen]


def list_events(state: FakeState, request: ApiRequest) -> Reply:
    """GET /calendar/v3/calendars/{calendarId}/events."""
    requested_id = request.segments[3]
    with state.lock:
        user = state.authenticate(request, "calendar", EVENTS_SCOPES, "calendar.events.list")
        calendar = user.calendar(requested_id)
        if calendar is None:
            raise errors.not_found("calendar")
        _reject_with_sync_token(request, NOT_WITH_SYNC_TOKEN, ("showDeleted",))
        size = page_size(
            request,
            "maxResults",
            default=250,
            maximum=2500,
            clamp=True,
            error=errors.calendar_bad_request,
        )
        query = _EventQuery.from_request(request)
        events = user.events[calendar.calendar_id]
        listing = Listing(
            scope="events:" + calendar.calendar_id,
            full_keys=lambda: query.keys(events),
            changed_since=events.changed_since,
            expired=errors.full_sync_required,
            bad_page_token=_bad_page_token,
            signature=query.signature,
            min_seq=calendar.created_seq,
        )
        result = page(state, request, user, listing, size)
        with_cancelled = result.incremental or query.show_deleted or query.updated_min is not None
        items = []
        for key in result.keys:
            event = events.get(key)
            if event is None or (event.deleted and not with_cancelled):
                continue
            items.append(render_event(event, calendar.calendar_id))
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": calendar_etag("events:" + calendar.calendar_id, user.seq),
            "summary": calendar.summary,
            "description": "",
            "updated": rfc3339(state.now()),
            "timeZone": "UTC",
            "accessRole": "owner",
            "defaultReminders": [],
        }
        _finish(
            state,
            body,
            result.next_page_token,
            user.user_id,
            "events:" + calendar.calendar_id,
            result.start_seq,
        )
        body["items"] = items
    return Reply(200, body)


def resource_id(state: FakeState, user_id: str, calendar_id: str) -> str:
    """The opaque, stable resource id of a calendar's events collection."""
    digest = hashlib.sha256(f"{state.seed}:{user_id}:{calendar_id}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:20]).decode().rstrip("=")


def watch_events(state: FakeState, request: ApiRequest) -> Reply:
    """POST .../events/watch: open a web_hook channel and send its `sync` notification."""
    requested_id = request.segments[3]
    with state.lock:
        user = state.authenticate(request, "calendar", EVENTS_SCOPES, "calendar.events.watch")
        calendar = user.calendar(requested_id)
        if calendar is None:
            raise errors.not_found("calendar")
        body = _json_body(request)
        channel_id = body.get("id")
        if not isinstance(channel_id, str) or not channel_id or len(channel_id) > 64:
            raise errors.calendar_bad_request("Required", reason="required", location="id")
        if body.get("type") not in ("web_hook", "webhook"):
            raise errors.calendar_bad_request("Invalid value for: type", location="type")
        address = body.get("address")
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            raise errors.calendar_bad_request(
                f"Invalid webhook address: {address}",
                reason="push.webhookUrlNotHttps",
                location="address",
            )
        if channel_id in state.channels:
            raise errors.calendar_bad_request("Channel id not unique", reason="channelIdNotUnique")
        token = body.get("token")
        now = state.now()
        expiration = now + timedelta(seconds=_ttl(body))
        if body.get("expiration") is not None:
            try:
                requested = datetime.fromtimestamp(int(body["expiration"]) / 1000, UTC)
            except (TypeError, ValueError, OverflowError):
                raise errors.calendar_bad_request(
                    "Invalid expiration", location="expiration"
                ) from None
            expiration = min(expiration, requested)
        channel = Channel(
            channel_id=channel_id,
            resource_id=resource_id(state, user.user_id, calendar.calendar_id),
            resource_uri="https://www.googleapis.com/calendar/v3/calendars/"
            f"{quote(requested_id, safe='@')}/events?alt=json",
            token=token if isinstance(token, str) else None,
            address=address,
            expiration=expiration,
            user_id=user.user_id,
            calendar_id=calendar.calendar_id,
        )
        state.add_channel(channel)
    reply: dict[str, Any] = {
        "kind": "api#channel",
        "id": channel.channel_id,
        "resourceId": channel.resource_id,
        "resourceUri": channel.resource_uri,
    }
    if channel.token is not None:
        reply["token"] = channel.token
    reply["expiration"] = str(int(channel.expiration.timestamp() * 1000))
    return Reply(200, reply)


def _ttl(body: dict[str, Any]) -> int:
    params = body.get("params") or {}
    text = params.get("ttl") if isinstance(params, dict) else None
    if text is None:
        return DEFAULT_CHANNEL_TTL
    try:
        ttl = int(text)
    except (TypeError, ValueError):
        raise errors.calendar_bad_request(
            "Invalid value for: params.ttl", location="params.ttl"
        ) from None
    if ttl <= 0:
        raise errors.calendar_bad_request("Invalid value for: params.ttl", location="params.ttl")
    return min(ttl, MAX_CHANNEL_TTL)


def _json_body(request: ApiRequest) -> dict[str, Any]:
    try:
        return request.json()
    except ValueError:
        raise errors.calendar_bad_request("Parse Error", reason="parseError") from None


def stop_channel(state: FakeState, request: ApiRequest) -> Reply:
    """POST /calendar/v3/channels/stop: 204 when the channel was this user's, else 404."""
    with state.lock:
        user = state.authenticate(request, "calendar", STOP_SCOPES, "calendar.channels.stop")
        body = _json_body(request)
        channel = state.channels.get(str(body.get("id", "")))
        if (
            channel is None
            or channel.user_id != user.user_id
            or channel.resource_id != body.get("resourceId")
        ):
            raise errors.not_found(
                "calendar", f"Channel '{body.get('id')}' not found for project '0'"
            )
        state.drop_channel(channel)
    return Reply(204)
