"""Paging and sync-token logic shared by the four list endpoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from syncctl.fakegoogle.errors import ApiError
from syncctl.fakegoogle.records import UserState
from syncctl.fakegoogle.state import ApiRequest, FakeState
from syncctl.fakegoogle.tokens import PageSession


@dataclass
class Page:
    """One page of a listing: its keys, the whole listing's size, and what comes next."""

    keys: list[str]
    total: int
    incremental: bool
    next_page_token: str | None
    start_seq: int

    @property
    def last(self) -> bool:
        return self.next_page_token is None


@dataclass
class Listing:
    """How one endpoint lists a scope: keys for a full sync and the errors it speaks."""

    scope: str
    full_keys: Callable[[], list[str]]
    changed_since: Callable[[int], list[str]]
    expired: Callable[[], ApiError]
    bad_page_token: Callable[[], ApiError]
    signature: tuple[str, ...] = ()
    min_seq: int = 0  # tokens older than the scope's creation are expired


def page(
    state: FakeState, request: ApiRequest, user: UserState, listing: Listing, size: int
) -> Page:
    """Resolve pageToken / syncToken and cut the next page (call with the state lock held)."""
    page_token = request.param("pageToken")
    sync_token = request.param("syncToken")
    session_id: str | None = None
    if page_token is not None:
        resolved = state.pages.resolve(page_token, user.user_id, listing.scope)
        if resolved is None:
            raise listing.bad_page_token()
        session_id, session, offset = resolved
        # Google: all other parameters must match the call that returned the page token.
        if session.sync_token != sync_token or session.signature != listing.signature:
            raise listing.bad_page_token()
    else:
        offset = 0
        if sync_token is not None:
            record = state.sync_tokens.check(
                sync_token,
                user_id=user.user_id,
                scope=listing.scope,
                cutoff=user.token_cutoff,
                now=state.now(),
            )
            if record is None or record.seq < listing.min_seq:
                raise listing.expired()
            keys = listing.changed_since(record.seq)
        else:
            keys = listing.full_keys()
        session = PageSession(
            user.user_id, listing.scope, keys, user.seq, sync_token, listing.signature
        )
    end = offset + size
    next_token = None
    if end < len(session.keys):
        if session_id is None:
            session_id = state.pages.open(session)
        next_token = state.pages.token(session_id, end)
    return Page(
        session.keys[offset:end],
        len(session.keys),
        session.sync_token is not None,
        next_token,
        session.start_seq,
    )


def page_size(
    request: ApiRequest,
    name: str,
    *,
    default: int,
    maximum: int,
    clamp: bool,
    error: Callable[[str], ApiError],
) -> int:
    """A page-size parameter: 0/absent gives the default; above the maximum clamps or errors."""
    text = request.param(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise error(f"Invalid value for {name}: {text}") from None
    if value == 0 and not clamp:
        return default
    if value < 1 or (value > maximum and not clamp):
        raise error(f"Invalid value for {name}: {text}")
    return min(value, maximum)
