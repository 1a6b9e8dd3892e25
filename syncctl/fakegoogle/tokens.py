"""Opaque tokens the fake hands out: OAuth grants, access tokens, sync tokens and page tokens."""

from __future__ import annotations

import base64
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

ACCESS_TOKEN_SECONDS = 3599
SYNC_TOKEN_LIFETIME = timedelta(days=7)
MAX_PAGE_SESSIONS = 4096


@dataclass(slots=True)
class RefreshGrant:
    """One refresh token of a user; a reconnect or revoke retires it."""

    user_id: str
    revoked: bool = False
    scopes: frozenset[str] | None = None  # what the consent granted; None: the user's scopes


@dataclass(slots=True)
class AuthorizationCode:
    """A code the authorization endpoint redirected with, exchanged once at /token."""

    user_id: str
    redirect_uri: str
    scopes: frozenset[str]
    code_challenge: str | None
    code_challenge_method: str
    refresh_token: bool  # whether the exchange returns a refresh token
    expires_at: datetime
    used: bool = False


@dataclass(slots=True)
class Consent:
    """How the fake's consent screen answers (it approves at once unless told otherwise)."""

    user_id: str | None = None  # who signs in; None: the login_hint's account, else the first
    deny: bool = False  # the user clicks "Cancel": the redirect carries error=access_denied
    scopes: frozenset[str] | None = None  # grant only these of the requested ones
    refresh_token: bool = True  # False: the exchange returns no refresh token


@dataclass(slots=True)
class AccessToken:
    """An access token issued by /token, valid until `expires_at` by the injected clock."""

    user_id: str
    expires_at: datetime
    scopes: frozenset[str]
    revoked: bool = False
    expired: bool = False  # forced by expire_access_tokens

    def is_expired(self, now: datetime) -> bool:
        return self.expired or now >= self.expires_at


def new_secret(prefix: str) -> str:
    """A random credential string (never a real Google token prefix)."""
    return f"{prefix}-{secrets.token_urlsafe(24)}"


@dataclass(frozen=True, slots=True)
class SyncTokenRecord:
    """What a sync token stands for: changes after `seq` of one user's scope."""

    user_id: str
    scope: str
    seq: int
    issued_at: datetime
    serial: int


class SyncTokens:
    """Issues and checks sync tokens; unknown, foreign or old tokens are all "expired"."""

    def __init__(self, lifetime: timedelta = SYNC_TOKEN_LIFETIME) -> None:
        self.lifetime = lifetime
        self.serial = 0
        self._records: dict[str, SyncTokenRecord] = {}

    def issue(self, user_id: str, scope: str, seq: int, now: datetime) -> str:
        """A new opaque token for changes after `seq`."""
        self.serial += 1
        token = "CK" + secrets.token_urlsafe(30)
        self._records[token] = SyncTokenRecord(user_id, scope, seq, now, self.serial)
        return token

    def check(
        self, token: str, *, user_id: str, scope: str, cutoff: int, now: datetime
    ) -> SyncTokenRecord | None:
        """The token's record if it is this user's, for this scope, and still valid."""
        record = self._records.get(token)
        if record is None or record.user_id != user_id or record.scope != scope:
            return None
        if record.serial <= cutoff or now - record.issued_at >= self.lifetime:
            return None
        return record


@dataclass(slots=True)
class PageSession:
    """The frozen key list of one listing, served page by page."""

    user_id: str
    scope: str
    keys: list[str]
    start_seq: int
    sync_token: str | None
    signature: tuple[str, ...] = ()


class PageSessions:
    """Keeps recent listings so later pages are slices, never a re-scan (bounded, LRU)."""

    def __init__(self, limit: int = MAX_PAGE_SESSIONS) -> None:
        self.limit = limit
        self._sessions: OrderedDict[str, PageSession] = OrderedDict()

    def open(self, session: PageSession) -> str:
        """Remember a listing and return its id."""
        session_id = secrets.token_hex(8)
        self._sessions[session_id] = session
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session_id

    @staticmethod
    def token(session_id: str, offset: int) -> str:
        """The page token for the page starting at `offset`."""
        return base64.urlsafe_b64encode(f"{session_id}:{offset}".encode()).decode().rstrip("=")

    def resolve(self, token: str, user_id: str, scope: str) -> tuple[str, PageSession, int] | None:
        """Session id, listing and offset a page token points at, if it is this user's scope's."""
        try:
            padded = token + "=" * (-len(token) % 4)
            session_id, _, offset_text = base64.urlsafe_b64decode(padded).decode().partition(":")
            offset = int(offset_text)
        except (ValueError, UnicodeDecodeError):
            return None
        session = self._sessions.get(session_id)
        if session is None or session.user_id != user_id or session.scope != scope:
            return None
        self._sessions.move_to_end(session_id)
        return session_id, session, offset
