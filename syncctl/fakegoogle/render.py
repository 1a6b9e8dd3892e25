"""Records to Google's JSON shapes (People v1 Person/ContactGroup, Calendar v3 entries/events)."""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import UTC, datetime
from typing import Any

from syncctl.fakegoogle.records import Calendar, Event, Group, Person

PERSON_FIELDS = frozenset(
    {
        "addresses",
        "ageRanges",
        "biographies",
        "birthdays",
        "calendarUrls",
        "clientData",
        "coverPhotos",
        "emailAddresses",
        "events",
        "externalIds",
        "genders",
        "imClients",
        "interests",
        "locales",
        "locations",
        "memberships",
        "metadata",
        "miscKeywords",
        "names",
        "nicknames",
        "occupations",
        "organizations",
        "phoneNumbers",
        "photos",
        "relations",
        "sipAddresses",
        "skills",
        "urls",
        "userDefined",
    }
)
GROUP_FIELDS = frozenset({"clientData", "groupType", "memberCount", "metadata", "name"})
DEFAULT_GROUP_FIELDS = frozenset({"groupType", "memberCount", "metadata", "name"})
SYSTEM_GROUP_TITLES = {"myContacts": "My Contacts", "starred": "Starred"}


# Listings render the same records over and over; these spellings are pure functions of their
# arguments, so each is computed once (bounded caches: a fleet's records change slowly).
@functools.lru_cache(maxsize=65536)
def rfc3339(moment: datetime) -> str:
    """Google's timestamp spelling: UTC, milliseconds, `Z`."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=65536)
def _date_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(*parts: object) -> bytes:
    return hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).digest()


@functools.lru_cache(maxsize=65536)
def people_etag(key: str, seq: int) -> str:
    """A People-style etag that changes with every change."""
    return "%Eg" + base64.b64encode(_digest(key, seq)).decode().rstrip("=")


@functools.lru_cache(maxsize=65536)
def calendar_etag(key: str, seq: int) -> str:
    """A Calendar-style (quoted, numeric) etag that changes with every change."""
    return '"' + str(int.from_bytes(_digest(key, seq)[:7], "big")) + '"'


def _source(person: Person) -> dict[str, Any]:
    source_id = format(int(person.resource_name.removeprefix("people/c") or 0), "x")
    return {"type": "CONTACT", "id": source_id}


def render_person(person: Person, fields: frozenset[str], *, sync: bool) -> dict[str, Any]:
    """A Person as connections.list returns it for `personFields`; tombstones are minimal."""
    etag = people_etag(person.resource_name, person.seq)
    out: dict[str, Any] = {"resourceName": person.resource_name, "etag": etag}
    if person.deleted:
        out["metadata"] = {"deleted": True}
        return out
    source = _source(person)
    primary = {"primary": True, "sourcePrimary": True, "source": source}
    if "metadata" in fields:
        metadata: dict[str, Any] = {
            "sources": [
                {
                    **source,
                    "etag": "#" + etag[3:15],
                    "updateTime": rfc3339(person.updated),
                }
            ],
            "objectType": "PERSON",
        }
        if sync and person.previous_names:
            metadata["previousResourceNames"] = list(person.previous_names)
        out["metadata"] = metadata
    if "names" in fields and (person.given_name or person.family_name):
        display = f"{person.given_name} {person.family_name}".strip()
        name: dict[str, Any] = {"metadata": primary, "displayName": display}
        if person.family_name:
            name["familyName"] = person.family_name
            name["displayNameLastFirst"] = f"{person.family_name}, {person.given_name}".strip(", ")
        else:
            name["displayNameLastFirst"] = display
        if person.given_name:
            name["givenName"] = person.given_name
        name["unstructuredName"] = display
        out["names"] = [name]
    if "emailAddresses" in fields and person.emails:
        out["emailAddresses"] = [
            {
                "metadata": primary if i == 0 else {"source": source},
                "value": value,
                "type": "home",
                "formattedType": "Home",
            }
            for i, value in enumerate(person.emails)
        ]
    if "phoneNumbers" in fields and person.phones:
        out["phoneNumbers"] = [
            {
                "metadata": primary if i == 0 else {"source": source},
                "value": value,
                "canonicalForm": "+" + "".join(ch for ch in value if ch.isdigit()),
                "type": "mobile",
                "formattedType": "Mobile",
            }
            for i, value in enumerate(person.phones)
        ]
    if "organizations" in fields and person.organization:
        out["organizations"] = [{"metadata": primary, "name": person.organization}]
    if "birthdays" in fields and person.birthday:
        day = person.birthday
        out["birthdays"] = [
            {"metadata": primary, "date": {"year": day.year, "month": day.month, "day": day.day}}
        ]
    if "addresses" in fields and person.address:
        street, _, city = person.address.partition(", ")
        out["addresses"] = [
            {
                "metadata": primary,
                "formattedValue": person.address,
                "type": "home",
                "formattedType": "Home",
                "streetAddress": street,
                "city": city,
                "countryCode": "US",
            }
        ]
    if "biographies" in fields and person.biography:
        out["biographies"] = [
            {"metadata": primary, "value": person.biography, "contentType": "TEXT_PLAIN"}
        ]
    if "memberships" in fields:
        out["memberships"] = [
            {
                "metadata": {"source": source},
                "contactGroupMembership": {
                    "contactGroupId": group.removeprefix("contactGroups/"),
                    "contactGroupResourceName": group,
                },
            }
            for group in ("contactGroups/myContacts", *person.groups)
        ]
    return out


def render_group(group: Group, fields: frozenset[str], member_count: int) -> dict[str, Any]:
    """A ContactGroup for `groupFields`; deleted groups carry `metadata.deleted`."""
    out: dict[str, Any] = {
        "resourceName": group.resource_name,
        "etag": people_etag(group.resource_name, group.seq),
    }
    if group.deleted:
        out["metadata"] = {"updateTime": rfc3339(group.updated), "deleted": True}
        return out
    if "metadata" in fields:
        out["metadata"] = {"updateTime": rfc3339(group.updated)}
    if "groupType" in fields:
        out["groupType"] = group.group_type
    if "name" in fields:
        out["name"] = group.name
        out["formattedName"] = SYSTEM_GROUP_TITLES.get(group.name, group.name)
    if "memberCount" in fields and member_count:
        out["memberCount"] = member_count
    return out


def render_calendar(calendar: Calendar) -> dict[str, Any]:
    """A CalendarListEntry; deleted entries are `{kind, etag, id, deleted: true}`."""
    out: dict[str, Any] = {
        "kind": "calendar#calendarListEntry",
        "etag": calendar_etag(calendar.calendar_id, calendar.seq),
        "id": calendar.calendar_id,
    }
    if calendar.deleted:
        out["deleted"] = True
        return out
    out.update(
        {
            "summary": calendar.summary,
            "timeZone": "UTC",
            "colorId": "14",
            "backgroundColor": "#9fe1e7",
            "foregroundColor": "#000000",
            "selected": True,
            "accessRole": "owner",
            "defaultReminders": [],
        }
    )
    if calendar.primary:
        out["primary"] = True
    return out


def render_event(event: Event, calendar_id: str) -> dict[str, Any]:
    """An Event; cancelled ones carry only what Google guarantees for deletions."""
    out: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": calendar_etag(event.event_id, event.seq),
        "id": event.event_id,
        "status": event.status,
    }
    if event.deleted:
        return out
    out.update(
        {
            "created": rfc3339(event.created),
            "updated": rfc3339(event.updated),
            "summary": event.summary,
            "creator": {"email": calendar_id, "self": True},
            "organizer": {"email": calendar_id, "self": True},
            "start": {"dateTime": _date_time(event.start), "timeZone": "UTC"},
            "end": {"dateTime": _date_time(event.end), "timeZone": "UTC"},
            "iCalUID": f"{event.event_id}@google.com",
            "sequence": 0,
            "reminders": {"useDefault": True},
            "eventType": "default",
        }
    )
    return out
