"""Google Contacts into `contacts` and `contact_groups`: full, then incremental, page by page.

People API choices (https://developers.google.com/people/api/rest/v1/people.connections/list):
- `personFields` is `PERSON_FIELDS` below: what the `contacts` columns hold, plus `metadata`,
  which carries `deleted` and `previousResourceNames` on sync requests. Changing it changes
  the request, so a stored sync token must be dropped (run with `full=True`) when it changes.
- `pageSize=1000` (the maximum), default `sources` and `sortOrder`; the full sync asks for
  `requestSyncToken`, the incremental one sends the stored `syncToken` with the same
  parameters, and every page repeats the first call's parameters plus its `pageToken`.
- A deleted person (`metadata.deleted`) is removed; a person whose resource name changed
  (`metadata.previousResourceNames`) replaces the row under its old name (one update).
- An expired token (400 `EXPIRED_SYNC_TOKEN`) falls back to a full sync: not a failure.
- List fields (emails, phones, ...) are stored as JSON arrays of Google's objects without
  their per-field `metadata` (source bookkeeping that would bloat every row).

Contact groups (contactGroups.list) follow a successful contact sync, with their own token
(scope `contact_groups`): Google returns a `nextSyncToken` there without being asked, and
reports deleted groups with `metadata.deleted`. A group's `member_count` is as fresh as the
group's own last change or full listing: a membership change is reported on the person, and
(as far as the fake and Google's documentation show) does not make the group itself "changed".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from syncctl.clock import Clock
from syncctl.engines import SyncOutcome
from syncctl.engines._scope import GuardedMirror, PageChanges, Scope, combine, sync_scope
from syncctl.engines.guard import DeletionGuard
from syncctl.google import GoogleSession
from syncctl.model import Integration
from syncctl.store import contacts as store
from syncctl.store.contacts import ContactRow, GroupRow
from syncctl.store.sync_tokens import PendingToken

PERSON_FIELDS = ",".join(
    (
        "names",
        "emailAddresses",
        "phoneNumbers",
        "organizations",
        "birthdays",
        "addresses",
        "biographies",
        "memberships",
        "metadata",
    )
)
PAGE_SIZE = 1000
# One encoder for every row: json.dumps with options would build a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
CONNECTIONS_SCOPE = "connections"
GROUPS_SCOPE = "contact_groups"


def sync_contacts(
    db: sqlite_utils.Database,
    session: GoogleSession,
    user_id: str,
    *,
    full: bool = False,
    now: Clock,
    guard: DeletionGuard | None = None,
    pending: list[PendingToken] | None = None,
) -> SyncOutcome:
    """Sync a user's contacts, then (only if that succeeded) their contact groups.

    With a `guard`, the contacts' deletions wait for it (MassDeleteHeld when it holds them).
    `pending`: where new tokens that cover no data go, for the caller to store with its record.
    """
    calls_before = session.calls_made
    people = Scope(
        integration=Integration.CONTACTS,
        name=CONNECTIONS_SCOPE,
        fetch=lambda token: session.list_connections(
            sync_token=token, person_fields=PERSON_FIELDS, page_size=PAGE_SIZE
        ),
        prepare=_people_changes,
        generation=lambda conn, new: store.contacts_generation(conn, user_id, new=new),
        save=lambda conn, changes, generation: store.save_contacts(
            conn,
            user_id,
            changes.rows,
            generation=generation,
            removed=changes.removed,
            previous_names=changes.previous,
        ),
        sweep=lambda conn, generation: store.sweep_contacts(conn, user_id, generation),
        guarded=GuardedMirror("contacts", store.CONTACTS, (user_id,), guard) if guard else None,
    )
    groups = Scope(
        integration=Integration.CONTACTS,
        name=GROUPS_SCOPE,
        fetch=lambda token: session.list_contact_groups(sync_token=token),
        prepare=_group_changes,
        generation=lambda conn, new: store.groups_generation(conn, user_id, new=new),
        save=lambda conn, changes, generation: store.save_groups(
            conn, user_id, changes.rows, generation=generation, removed=changes.removed
        ),
        sweep=lambda conn, generation: store.sweep_groups(conn, user_id, generation),
    )
    results = [sync_scope(db, user_id, people, full=full, now=now, pending=pending)]
    results.append(sync_scope(db, user_id, groups, full=full, now=now, pending=pending))
    return combine(results, calls=session.calls_made - calls_before)


def _people_changes(people: Sequence[dict[str, Any]]) -> PageChanges:
    changes = PageChanges()
    for person in people:
        name = person["resourceName"]
        metadata = person.get("metadata") or {}
        old_names = [n for n in metadata.get("previousResourceNames") or () if n != name]
        if metadata.get("deleted"):
            changes.removed += [name, *old_names]
            continue
        changes.rows.append(contact_row(person))
        if old_names:
            changes.previous[name] = old_names
    return changes


def _group_changes(groups: Sequence[dict[str, Any]]) -> PageChanges:
    changes = PageChanges()
    for group in groups:
        if (group.get("metadata") or {}).get("deleted"):
            changes.removed.append(group["resourceName"])
        else:
            changes.rows.append(group_row(group))
    return changes


def contact_row(person: dict[str, Any]) -> ContactRow:
    """The `contacts` row of a People API Person."""
    return ContactRow(
        resource_name=person["resourceName"],
        etag=person.get("etag"),
        display_name=_display_name(person.get("names") or []),
        emails=_json_list(person.get("emailAddresses")),
        phones=_json_list(person.get("phoneNumbers")),
        organizations=_json_list(person.get("organizations")),
        birthdays=_json_list(person.get("birthdays")),
        addresses=_json_list(person.get("addresses")),
        biographies=_json_list(person.get("biographies")),
        memberships=_json_list(person.get("memberships")),
        updated=_update_time(person.get("metadata") or {}),
    )


def group_row(group: dict[str, Any]) -> GroupRow:
    """The `contact_groups` row of a People API ContactGroup."""
    member_count = group.get("memberCount")
    return GroupRow(
        resource_name=group["resourceName"],
        etag=group.get("etag"),
        name=group.get("name") or group.get("formattedName"),
        group_type=group.get("groupType"),
        member_count=int(member_count) if member_count is not None else None,
        updated=(group.get("metadata") or {}).get("updateTime"),
    )


def _display_name(names: list[dict[str, Any]]) -> str | None:
    if not names:
        return None
    primary = next((n for n in names if (n.get("metadata") or {}).get("primary")), names[0])
    if primary.get("displayName"):
        return str(primary["displayName"])
    parts = [primary.get("givenName"), primary.get("familyName")]
    return " ".join(p for p in parts if p) or None


def _json_list(items: list[dict[str, Any]] | None) -> str:
    if not items:
        return "[]"
    return _ENCODER.encode([{k: v for k, v in item.items() if k != "metadata"} for item in items])


def _update_time(metadata: dict[str, Any]) -> str | None:
    times = [s["updateTime"] for s in metadata.get("sources") or () if s.get("updateTime")]
    return max(times) if times else None
