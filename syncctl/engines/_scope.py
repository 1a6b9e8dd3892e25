"""One sync scope (a collection with its own sync token): full or incremental, page by page.

The crash-safety argument, in one place:
- every page is one transaction; a page's rows, and on the last page the new sync token and
  (for a full sync) the sweep of rows the full listing did not contain, commit together;
- incremental pages are idempotent upserts and deletes by natural key, so replaying them
  from the old token after a crash duplicates nothing;
- a full sync writes its rows with a new generation and deletes the older generations of the
  scope only on its last page. Killed midway, it leaves the old token (if any) in place: the
  next run replays the changes since that token over the partly refreshed rows, which is
  still exact. Without a token the next run is a new full sync with a newer generation.
- an expired token is deleted at once, so a crash during the fallback full sync leads to
  another full sync, never to a retry of the dead token;
- pages are converted to rows before the transaction opens, so the write lock is held only
  for the SQL (other workers share the database).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlite_utils

from syncctl.clock import Clock
from syncctl.engines import SyncOutcome
from syncctl.google.errors import SyncTokenExpired
from syncctl.model import Integration, SyncType
from syncctl.store.db import transaction
from syncctl.store.mirror import ChangeCounts
from syncctl.store.sync_tokens import delete_sync_token, load_sync_token, save_sync_token


class PageLike(Protocol):
    """A page of a Google list call: its items and, on the last page, the next sync token."""

    @property
    def items(self) -> Sequence[dict[str, Any]]: ...

    @property
    def next_sync_token(self) -> str | None: ...


@dataclass
class PageChanges:
    """A page turned into rows to upsert, keys to delete and renames (built outside the lock)."""

    rows: list[Any] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    previous: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Scope:
    """How to fetch, convert, save and sweep one scope; the engine supplies the functions."""

    integration: Integration
    name: str
    fetch: Callable[[str | None], Iterable[PageLike]]
    prepare: Callable[[Sequence[dict[str, Any]]], PageChanges]
    generation: Callable[[sqlite3.Connection, bool], int]
    save: Callable[[sqlite3.Connection, PageChanges, int], ChangeCounts]
    sweep: Callable[[sqlite3.Connection, int], int]


@dataclass(frozen=True)
class ScopeResult:
    """What syncing one scope did."""

    sync_type: SyncType
    items_processed: int = 0
    counts: ChangeCounts = field(default_factory=ChangeCounts)
    full_resync: bool = False


def sync_scope(
    db: sqlite_utils.Database, user_id: str, scope: Scope, *, full: bool, now: Clock
) -> ScopeResult:
    """Sync one scope incrementally from its stored token, or fully (asked, or token expired)."""
    token = None if full else load_sync_token(db.conn, user_id, scope.integration, scope.name)
    if token is None:
        return _list_scope(db, user_id, scope, None, now=now)
    try:
        return _list_scope(db, user_id, scope, token, now=now)
    except SyncTokenExpired:
        with transaction(db) as conn:  # the dead token must not be retried after a crash
            delete_sync_token(conn, user_id, scope.integration, scope.name)
        result = _list_scope(db, user_id, scope, None, now=now)
        return ScopeResult(result.sync_type, result.items_processed, result.counts, True)


def _list_scope(
    db: sqlite_utils.Database, user_id: str, scope: Scope, token: str | None, *, now: Clock
) -> ScopeResult:
    is_full = token is None
    generation = scope.generation(db.conn, is_full)
    items = 0
    counts = ChangeCounts()
    swept = False
    for page in scope.fetch(token):
        changes = scope.prepare(page.items)  # outside the transaction: hold the lock briefly
        with transaction(db) as conn:  # one page, and with the last its token and sweep
            page_counts = scope.save(conn, changes, generation)
            if page.next_sync_token is not None:
                if is_full:
                    page_counts += ChangeCounts(deleted=scope.sweep(conn, generation))
                    swept = True
                save_sync_token(
                    conn, user_id, scope.integration, scope.name, page.next_sync_token, now=now()
                )
        items += len(page.items)
        counts += page_counts
    if is_full and not swept:
        # Google sent no sync token: the listing is still complete, so sweep on its own.
        with transaction(db) as conn:
            counts += ChangeCounts(deleted=scope.sweep(conn, generation))
    sync_type = SyncType.FULL if is_full else SyncType.INCREMENTAL
    return ScopeResult(sync_type, items, counts)


def combine(results: Sequence[ScopeResult], *, calls: int) -> SyncOutcome:
    """Fold the results of a run's scopes into one SyncOutcome."""
    total = ChangeCounts()
    for result in results:
        total += result.counts
    any_full = any(result.sync_type is SyncType.FULL for result in results)
    return SyncOutcome(
        sync_type=SyncType.FULL if any_full else SyncType.INCREMENTAL,
        items_processed=sum(result.items_processed for result in results),
        added=total.added,
        updated=total.updated,
        deleted=total.deleted,
        full_resync=any(result.full_resync for result in results),
        api_calls_made=calls,
    )
