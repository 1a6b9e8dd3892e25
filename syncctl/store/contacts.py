"""The `contacts` and `contact_groups` tables: pages of people and groups, sweeps, generations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from syncctl.store import mirror
from syncctl.store.mirror import ChangeCounts, MirrorTable


class ContactRow(NamedTuple):
    """One `contacts` row (lists as JSON text)."""

    resource_name: str
    etag: str | None
    display_name: str | None
    emails: str
    phones: str
    organizations: str
    birthdays: str
    addresses: str
    biographies: str
    memberships: str
    updated: str | None


class GroupRow(NamedTuple):
    """One `contact_groups` row."""

    resource_name: str
    etag: str | None
    name: str | None
    group_type: str | None
    member_count: int | None
    updated: str | None


CONTACTS = MirrorTable("contacts", ("user_id",), "resource_name", ContactRow._fields[1:])
GROUPS = MirrorTable("contact_groups", ("user_id",), "resource_name", GroupRow._fields[1:])


def contacts_generation(conn: sqlite3.Connection, user_id: str, *, new: bool) -> int:
    """The generation to write contacts with: a fresh one for a full sync, else the current."""
    if new:
        return mirror.next_generation(conn, CONTACTS, [user_id])
    return mirror.current_generation(conn, CONTACTS, [user_id])


def save_contacts(
    conn: sqlite3.Connection,
    user_id: str,
    rows: Sequence[ContactRow],
    *,
    generation: int,
    removed: Iterable[str] = (),
    previous_names: Mapping[str, Sequence[str]] | None = None,
) -> ChangeCounts:
    """Upsert a page of contacts, delete removed ones, and replace renamed ones."""
    return mirror.apply_changes(
        conn,
        CONTACTS,
        [user_id],
        rows,
        generation=generation,
        removals=removed,
        previous_keys=previous_names,
    )


def sweep_contacts(conn: sqlite3.Connection, user_id: str, generation: int) -> int:
    """Delete the contacts a full sync of `generation` did not see."""
    return mirror.sweep(conn, CONTACTS, [user_id], generation)


def groups_generation(conn: sqlite3.Connection, user_id: str, *, new: bool) -> int:
    """The generation to write contact groups with (fresh for a full sync)."""
    if new:
        return mirror.next_generation(conn, GROUPS, [user_id])
    return mirror.current_generation(conn, GROUPS, [user_id])


def save_groups(
    conn: sqlite3.Connection,
    user_id: str,
    rows: Sequence[GroupRow],
    *,
    generation: int,
    removed: Iterable[str] = (),
) -> ChangeCounts:
    """Upsert a page of contact groups and delete removed ones."""
    return mirror.apply_changes(
        conn, GROUPS, [user_id], rows, generation=generation, removals=removed
    )


def sweep_groups(conn: sqlite3.Connection, user_id: str, generation: int) -> int:
    """Delete the contact groups a full sync of `generation` did not see."""
    return mirror.sweep(conn, GROUPS, [user_id], generation)


def load_contacts(conn: sqlite3.Connection, user_id: str) -> dict[str, ContactRow]:
    """A user's stored contacts by resource name."""
    rows = mirror.load_rows(conn, CONTACTS, [user_id])
    return {key: ContactRow(*row) for key, row in rows.items()}


def load_groups(conn: sqlite3.Connection, user_id: str) -> dict[str, GroupRow]:
    """A user's stored contact groups by resource name."""
    rows = mirror.load_rows(conn, GROUPS, [user_id])
    return {key: GroupRow(*row) for key, row in rows.items()}
