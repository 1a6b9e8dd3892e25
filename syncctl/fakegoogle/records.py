"""What the fake Google stores per user: people, groups, calendars and events, in change order."""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Generic, Protocol, TypeVar


@dataclass(frozen=True, slots=True)
class Person:
    """One contact; replaced (never mutated) on every change, so a snapshot stays consistent."""

    resource_name: str
    seq: int
    updated: datetime
    given_name: str = ""
    family_name: str = ""
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    organization: str | None = None
    birthday: date | None = None
    address: str | None = None
    biography: str | None = None
    groups: tuple[str, ...] = ()  # contactGroups/... resource names besides myContacts
    previous_names: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    """A contact group (user or system)."""

    resource_name: str
    seq: int
    updated: datetime
    name: str
    group_type: str = "USER_CONTACT_GROUP"
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Calendar:
    """An entry of the user's calendar list; `created_seq` tells incarnations of one id apart."""

    calendar_id: str
    seq: int
    updated: datetime
    summary: str
    created_seq: int
    primary: bool = False
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """A single (non-recurring) event; deletion turns it into a `cancelled` tombstone."""

    event_id: str
    seq: int
    created: datetime
    updated: datetime
    summary: str
    start: datetime
    end: datetime
    status: str = "confirmed"

    @property
    def deleted(self) -> bool:
        return self.status == "cancelled"


class _Record(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def deleted(self) -> bool: ...


R = TypeVar("R", bound=_Record)


class Collection(Generic[R]):
    """Records by key, iterated oldest change first, so "changed since" is a short reverse walk."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, R] = OrderedDict()

    def put(self, key: str, record: R) -> None:
        """Store a new version of a record and move it to the newest end."""
        self._items[key] = record
        self._items.move_to_end(key)

    def drop(self, key: str) -> None:
        """Forget a record entirely (no tombstone)."""
        self._items.pop(key, None)

    def get(self, key: str) -> R | None:
        """The current version of a record (live or tombstone), or None."""
        return self._items.get(key)

    def live(self, key: str) -> R | None:
        """The current version of a record if it is not deleted."""
        record = self._items.get(key)
        return None if record is None or record.deleted else record

    def live_keys(self) -> list[str]:
        """Keys of live records, oldest change first."""
        return [key for key, record in self._items.items() if not record.deleted]

    def all_keys(self) -> list[str]:
        """Keys of live records and tombstones, oldest change first."""
        return list(self._items)

    def changed_since(self, seq: int) -> list[str]:
        """Keys changed after `seq` (tombstones included), oldest change first."""
        keys: list[str] = []
        for key in reversed(self._items):
            if self._items[key].seq <= seq:
                break
            keys.append(key)
        keys.reverse()
        return keys

    def records(self) -> list[R]:
        """Live records and tombstones, oldest change first."""
        return list(self._items.values())

    def live_records(self) -> list[R]:
        """Live records, oldest change first."""
        return [record for record in self._items.values() if not record.deleted]


@dataclass(eq=False)
class UserState:
    """Everything the fake holds for one Google account."""

    user_id: str
    email: str
    subject: str
    scopes: tuple[str, ...]
    rng: random.Random
    seq: int = 0
    token_cutoff: int = 0  # sync tokens with a serial at or below this are expired
    people: Collection[Person] = field(default_factory=Collection)
    groups: Collection[Group] = field(default_factory=Collection)
    calendars: Collection[Calendar] = field(default_factory=Collection)
    events: dict[str, Collection[Event]] = field(default_factory=dict)

    def bump(self) -> int:
        """Advance the user's change counter and return the new value."""
        self.seq += 1
        return self.seq

    def calendar(self, calendar_id: str) -> Calendar | None:
        """A live calendar by id, `primary` meaning the primary calendar."""
        if calendar_id == "primary":
            for record in self.calendars.live_records():
                if record.primary:
                    return record
            return None
        return self.calendars.live(calendar_id)
