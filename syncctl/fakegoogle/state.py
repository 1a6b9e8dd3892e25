"""The fake's shared state, the parsed request, and the access-token check every data call makes."""

from __future__ import annotations

import functools
import json
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from syncctl.clock import Clock
from syncctl.fakegoogle import errors
from syncctl.fakegoogle.channels import Channel, Notifier
from syncctl.fakegoogle.faults import Counters, Faults
from syncctl.fakegoogle.records import UserState
from syncctl.fakegoogle.tokens import (
    AccessToken,
    AuthorizationCode,
    Consent,
    PageSessions,
    RefreshGrant,
    SyncTokens,
)

SCOPE = "https://www.googleapis.com/auth/"
CONTACTS_SCOPES = frozenset({SCOPE + "contacts", SCOPE + "contacts.readonly"})
CALENDAR_LIST_SCOPES = frozenset(
    {
        SCOPE + "calendar",
        SCOPE + "calendar.readonly",
        SCOPE + "calendar.calendarlist",
        SCOPE + "calendar.calendarlist.readonly",
    }
)
EVENTS_SCOPES = frozenset(
    {
        SCOPE + "calendar",
        SCOPE + "calendar.readonly",
        SCOPE + "calendar.events",
        SCOPE + "calendar.events.readonly",
        SCOPE + "calendar.events.owned",
        SCOPE + "calendar.events.owned.readonly",
    }
)
ALL_SCOPES: tuple[str, ...] = (SCOPE + "contacts.readonly", SCOPE + "calendar.readonly")


def _unquoted(text: str) -> str:
    return unquote_plus(text) if "%" in text or "+" in text else text


def parse_query(query: str, *, keep_blank: bool = False) -> dict[str, list[str]]:
    """What `parse_qs(query, keep_blank_values=keep_blank)` reads from a str, read faster."""
    # parse_qs builds a list of pairs first and unquotes every name and value; most of the
    # fake's fields have nothing to unquote, and are taken as they are.
    fields: dict[str, list[str]] = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if not pair or not (value or keep_blank):
            continue
        name, value = _unquoted(name), _unquoted(value)
        values = fields.get(name)
        if values is None:
            fields[name] = [value]
        else:
            values.append(value)
    return fields


@dataclass
class ApiRequest:
    """One parsed HTTP request."""

    method: str
    segments: Sequence[str]  # URL-decoded path segments
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    @functools.cached_property
    def form(self) -> dict[str, list[str]]:
        """The body read as a form (read once: attribution and the endpoint both ask)."""
        return parse_query(self.body.decode("utf-8", "replace"))

    def param(self, name: str) -> str | None:
        """The last value of a query parameter; empty counts as absent."""
        values = self.query.get(name)
        return values[-1] if values and values[-1] != "" else None

    def flag(self, name: str) -> bool | None:
        """A boolean query parameter (None when absent)."""
        value = self.param(name)
        return None if value is None else value.lower() == "true"

    def json(self) -> dict[str, Any]:
        """The JSON object body, or {} when empty; ValueError if it is not an object."""
        if not self.body:
            return {}
        document = json.loads(self.body)
        if not isinstance(document, dict):
            raise ValueError("body is not a JSON object")
        return document

    def bearer(self) -> str | None:
        """The access token of the Authorization header, if any."""
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None


class FakeState:
    """Everything mutable behind one re-entrant lock (counters and faults have their own)."""

    def __init__(self, *, clock: Clock, seed: int) -> None:
        self.clock = clock
        self.seed = seed
        self.lock = threading.RLock()
        self.users: dict[str, UserState] = {}
        self.client_id = f"fake-{seed}.apps.googleusercontent.com"
        self.client_secret = ""  # set by FakeGoogle
        self.refresh_grants: dict[str, RefreshGrant] = {}
        self.rotating_users: set[str] = set()  # their refreshes return a new refresh token
        self.access_tokens: dict[str, AccessToken] = {}
        self.authorization_codes: dict[str, AuthorizationCode] = {}
        self.consent = Consent()
        self.consented: set[str] = set()  # users who approved this client before
        self.sync_tokens = SyncTokens()
        self.pages = PageSessions()
        self.channels: dict[str, Channel] = {}
        self.watchers: dict[tuple[str, str], set[str]] = {}  # (user, calendar) -> channel ids
        self.notifier = Notifier()
        # Google does not promise delivery: this share of change notifications is never sent.
        self.drop_share = 0.0
        self.dropped_notifications = 0
        self.drop_rng = random.Random(f"{seed}:drops")  # noqa: S311 (reproducible, no secret)
        self.faults = Faults()
        self.counters = Counters()
        self.base_url = ""

    def now(self) -> datetime:
        return self.clock()

    def add_channel(self, channel: Channel) -> None:
        """Register a watch channel and send its `sync` notification."""
        self.channels[channel.channel_id] = channel
        self.watchers.setdefault((channel.user_id, channel.calendar_id), set()).add(
            channel.channel_id
        )
        self.notifier.submit(channel, "sync")

    def drop_channel(self, channel: Channel) -> None:
        """Forget a channel (channels.stop)."""
        channel.stopped = True
        self.channels.pop(channel.channel_id, None)
        self.watchers.get((channel.user_id, channel.calendar_id), set()).discard(channel.channel_id)

    def notify(self, user_id: str, calendar_id: str, resource_state: str) -> None:
        """Queue a notification on every live channel watching a calendar's events."""
        now = self.now()
        for channel_id in sorted(self.watchers.get((user_id, calendar_id), ())):
            channel = self.channels.get(channel_id)
            if channel is None or not channel.live(now):
                continue
            if self.drop_share > 0 and self.drop_rng.random() < self.drop_share:
                self.dropped_notifications += 1
                continue
            self.notifier.submit(channel, resource_state)

    def user(self, user_id: str) -> UserState:
        """A user by id; ValueError if unknown."""
        try:
            return self.users[user_id]
        except KeyError:
            raise ValueError(f"unknown fake user {user_id!r}") from None

    def attribute(self, endpoint: str, request: ApiRequest) -> str | None:
        """The user a request belongs to, by the refresh or access token it carries."""
        if endpoint == "oauth.token":
            form = request.form
            grant = self.refresh_grants.get((form.get("refresh_token") or [""])[-1])
            if grant is None:
                code = self.authorization_codes.get((form.get("code") or [""])[-1])
                return code.user_id if code else None
            return grant.user_id
        token = request.param("access_token") if endpoint == "oauth.tokeninfo" else None
        token = token or request.bearer()
        access = self.access_tokens.get(token) if token else None
        return access.user_id if access else None

    def authenticate(
        self, request: ApiRequest, family: str, accepted: frozenset[str], method: str
    ) -> UserState:
        """The caller's user, or a 401 / 403 (missing scope) in the family's shape."""
        token = request.bearer()
        if token is None:
            raise errors.unauthenticated(family, missing=True)
        access = self.access_tokens.get(token)
        if access is None or access.revoked:
            raise errors.unauthenticated(family, missing=False)
        if access.is_expired(self.now()):
            raise errors.unauthenticated(family, missing=False, expired=True)
        if not access.scopes & accepted:
            raise errors.insufficient_scope(family, method)
        return self.users[access.user_id]
