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
- an incremental listing whose last page brings nothing to write leaves its new token, when
  the caller asks (`pending`), to the transaction of the attempt's record: a token that covers
  no data, so a crash before that commit loses nothing the old token does not replay;
- an expired token is deleted at once, so a crash during the fallback full sync leads to
  another full sync, never to a retry of the dead token;
- pages are converted to rows before the transaction opens, so the write lock is held only
  for the SQL (other workers share the database).

The mass-delete guard (SPEC 3) for a guarded scope (a user's contacts, one calendar's events):
no page's deletions are applied as it arrives. Their keys are kept (only keys: memory grows
with the deletions, never with the items; a later page that lists a key again takes it back
out) and applied in the last page's transaction, with the full sync's sweep and the new token,
after the guard has seen the whole count. A held sync raises MassDeleteHeld from inside that
transaction, so it rolls back: nothing is deleted and the token stays where it was. The
upserts of earlier pages stay committed; the old token replays them, idempotently, next time.
A crash before the end loses only the kept keys, which the old token brings back too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlite_utils

from syncctl.clock import Clock
from syncctl.engines import SyncOutcome
from syncctl.engines.guard import DeletionGuard, MassDeleteHeld
from syncctl.google.errors import SyncTokenExpired
from syncctl.model import Integration, SyncType
from syncctl.policy.mass_delete import Deletions
from syncctl.store import mirror
from syncctl.store.db import transaction
from syncctl.store.mirror import ChangeCounts, MirrorTable
from syncctl.store.sync_tokens import (
    PendingToken,
    delete_sync_token,
    load_sync_token,
    save_sync_token,
)


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
class GuardedMirror:
    """The mirror table rows of a guarded scope live in, and the guard that may hold deletions.

    By default the scope's own rows are weighed and deleted. A scope whose rows carry others
    (a calendar-list entry takes its events with it) supplies `weigh(conn, keys, older_than)`,
    the mirrors those deletions would shrink, and `remove(conn, keys)`, which deletes them.
    """

    name: str  # how the notice names it: "contacts", "events of calendar X"
    table: MirrorTable
    key: tuple[str, ...]  # the table's scope column values
    guard: DeletionGuard
    weigh: Callable[[sqlite3.Connection, list[str], int | None], list[Deletions]] | None = None
    remove: Callable[[sqlite3.Connection, list[str]], int] | None = None


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
    guarded: GuardedMirror | None = None
    # The scope's stored token as its engine read it with other rows (one statement fewer);
    # by default sync_scope reads it. The pair's lease keeps it from changing meanwhile.
    stored_token: Callable[[], str | None] | None = None


@dataclass(frozen=True)
class ScopeResult:
    """What syncing one scope did."""

    sync_type: SyncType
    items_processed: int = 0
    counts: ChangeCounts = field(default_factory=ChangeCounts)
    full_resync: bool = False


def sync_scope(
    db: sqlite_utils.Database,
    user_id: str,
    scope: Scope,
    *,
    full: bool,
    now: Clock,
    pending: list[PendingToken] | None = None,
) -> ScopeResult:
    """Sync one scope incrementally from its stored token, or fully (asked, or token expired).

    `pending`: where a new token that covers no data goes instead of a transaction of its own
    (the caller stores it with the attempt's record)."""
    if full:
        token = None
    elif scope.stored_token is not None:
        token = scope.stored_token()
    else:
        token = load_sync_token(db.conn, user_id, scope.integration, scope.name)
    if token is None:
        return _list_scope(db, user_id, scope, None, now=now)
    try:
        return _list_scope(db, user_id, scope, token, now=now, pending=pending)
    except SyncTokenExpired:
        with transaction(db) as conn:  # the dead token must not be retried after a crash
            delete_sync_token(conn, user_id, scope.integration, scope.name)
        result = _list_scope(db, user_id, scope, None, now=now)
        return ScopeResult(result.sync_type, result.items_processed, result.counts, True)


def _list_scope(
    db: sqlite_utils.Database,
    user_id: str,
    scope: Scope,
    token: str | None,
    *,
    now: Clock,
    pending: list[PendingToken] | None = None,
) -> ScopeResult:
    is_full = token is None
    # An incremental sync writes with the scope's current generation, looked up only once a
    # page has rows to write: most incremental syncs find nothing, and skip the query.
    generation = scope.generation(db.conn, True) if is_full else None
    items = 0
    counts = ChangeCounts()
    finished = False
    kept: set[str] = set()  # a guarded scope's deletions, applied at the end
    for page in scope.fetch(token):
        changes = scope.prepare(page.items)  # outside the transaction: hold the lock briefly
        if scope.guarded is not None:
            kept.difference_update(row[0] for row in changes.rows)
            kept.update(changes.removed)
            changes.removed = []
        items += len(page.items)
        last_token = page.next_sync_token
        if (
            pending is not None
            and last_token is not None
            and _nothing_to_write(changes, kept, is_full)
        ):
            pending.append(PendingToken(scope.integration, scope.name, last_token, now()))
            finished = True
            continue
        with transaction(db) as conn:  # one page, and with the last its token and sweep
            if generation is None and changes.rows:
                generation = scope.generation(conn, False)
            page_counts = scope.save(conn, changes, generation or 0)
            if page.next_sync_token is not None:
                so_far = counts + page_counts
                page_counts += _finish(conn, scope, kept, generation or 0, so_far, is_full)
                finished = True
                save_sync_token(
                    conn, user_id, scope.integration, scope.name, page.next_sync_token, now=now()
                )
        counts += page_counts
    if not finished and (is_full or kept):
        # Google sent no sync token: the listing is still complete, so finish on its own.
        with transaction(db) as conn:
            counts += _finish(conn, scope, kept, generation or 0, counts, is_full)
    sync_type = SyncType.FULL if is_full else SyncType.INCREMENTAL
    return ScopeResult(sync_type, items, counts)


def _nothing_to_write(changes: PageChanges, kept: set[str], is_full: bool) -> bool:
    """A last page with nothing to write, sweep or delete: an incremental one that brings no
    rows and no deletions, after pages that left no guarded deletions waiting."""
    return not is_full and not changes.rows and not changes.removed and not kept


def _finish(
    conn: sqlite3.Connection,
    scope: Scope,
    kept: set[str],
    generation: int,
    so_far: ChangeCounts,
    is_full: bool,
) -> ChangeCounts:
    """The end of a listing: kept deletions and (full sync) the sweep, if the guard lets them."""
    guarded = scope.guarded
    if guarded is None:
        return ChangeCounts(deleted=scope.sweep(conn, generation) if is_full else 0)
    keys = sorted(kept)
    for deletions in _weigh(conn, guarded, keys, generation if is_full else None, so_far):
        if guarded.guard(deletions):
            raise MassDeleteHeld(deletions)  # rolls this transaction back: nothing deleted
    if guarded.remove is not None:
        deleted = guarded.remove(conn, keys) if keys else 0
    else:
        deleted = mirror.delete_keys(conn, guarded.table, guarded.key, keys)
    return ChangeCounts(deleted=deleted + (scope.sweep(conn, generation) if is_full else 0))


def _weigh(
    conn: sqlite3.Connection,
    guarded: GuardedMirror,
    keys: list[str],
    older_than: int | None,
    so_far: ChangeCounts,
) -> list[Deletions]:
    if guarded.weigh is not None:
        return guarded.weigh(conn, keys, older_than)
    table, key = guarded.table, guarded.key
    present = mirror.count_rows(conn, table, key, keys=keys) if keys else 0
    if older_than is not None:
        present += mirror.count_rows(conn, table, key, older_than=older_than)
    if not present:
        return []
    mirrored = mirror.count_rows(conn, table, key) - so_far.added  # as it was before this sync
    return [Deletions(guarded.name, mirrored, present)]


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
