"""Deterministic fake data: ids shaped like Google's and plausible people and events."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from syncctl.fakegoogle.records import Person

FIRST_NAMES = (
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Dennis",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ivan",
    "John",
    "Katherine",
    "Ken",
    "Linus",
    "Margaret",
    "Niklaus",
    "Radia",
    "Shafi",
    "Tim",
    "Vint",
    "Whitfield",
    "Yukihiro",
    "Anita",
    "Bjarne",
    "Carol",
    "Donald",
    "Elena",
    "Fran",
    "Guido",
    "Hal",
    "Ines",
    "Jean",
    "Karen",
    "Leslie",
    "Mary",
    "Noor",
    "Olga",
    "Pat",
    "Quinn",
    "Rosa",
)
LAST_NAMES = (
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Ritchie",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Lamarr",
    "Sutherland",
    "McCarthy",
    "Johnson",
    "Thompson",
    "Torvalds",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Goldwasser",
    "Berners-Lee",
    "Cerf",
    "Diffie",
    "Matsumoto",
    "Borg",
    "Stroustrup",
    "Shaw",
    "Knuth",
    "Garcia",
    "Allen",
    "Rossum",
    "Abelson",
    "Rivera",
    "Sammet",
    "Jones",
    "Lamport",
    "Keller",
    "Haddad",
    "Petrova",
    "Hanrahan",
    "Nakamura",
    "Silva",
)
COMPANIES = ("Initech", "Globex", "Umbrella", "Hooli", "Acme", "Vandelay", "Stark", "Wayne")
STREETS = ("Main St", "Oak Ave", "Elm St", "Mill Rd", "Park Ln", "High St", "Lake Dr")
CITIES = ("Springfield", "Riverton", "Fairview", "Lakewood", "Georgetown", "Salem")
BIOGRAPHIES = ("Met at a conference.", "Old friend.", "Neighbour.", "Colleague.", "Climbing club.")
GROUP_NAMES = ("Family", "Friends", "Work", "Book club", "Neighbours", "Climbing", "School")
CALENDAR_NAMES = ("Work", "Family", "Sports", "Travel", "Birthdays", "Projects", "Garden")
EVENT_NAMES = (
    "Standup",
    "1:1",
    "Lunch",
    "Dentist",
    "Planning",
    "Review",
    "Gym",
    "Call with Sam",
    "Retro",
    "Demo",
    "Coffee",
    "Flight",
    "Dinner",
    "Yoga",
    "Interview",
    "Offsite",
)
_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"


def person_resource_name(rng: random.Random) -> str:
    """A People resource name like `people/c1234567890123456789`."""
    return f"people/c{rng.randrange(10**18, 10**19)}"


def group_resource_name(rng: random.Random) -> str:
    """A user contact group resource name like `contactGroups/1a2b3c4d5e6f7a8b`."""
    return f"contactGroups/{rng.getrandbits(64):016x}"


def calendar_id(rng: random.Random) -> str:
    """A secondary calendar id like `c_...@group.calendar.google.com`."""
    return f"c_{rng.getrandbits(104):026x}@group.calendar.google.com"


def event_id(rng: random.Random) -> str:
    """An event id in Google's base32hex alphabet."""
    return "".join(rng.choice(_BASE32HEX) for _ in range(26))


def split_name(name: str) -> tuple[str, str]:
    """Split a display name into given and family name (last word is the family name)."""
    parts = name.strip().rsplit(" ", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "")


def random_person(
    rng: random.Random, resource_name: str, seq: int, now: datetime, groups: list[str]
) -> Person:
    """A plausible contact; optional fields appear with realistic frequency."""
    given, family = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = f"{given}.{family}".lower().replace("-", "")
    email = f"{local}{rng.randrange(1000)}@example.org"
    phone = f"+1 555-{rng.randrange(100, 1000)}-{rng.randrange(1000, 10000)}"
    organization = rng.choice(COMPANIES) if rng.random() < 0.4 else None
    birthday = (
        date(rng.randrange(1950, 2005), rng.randrange(1, 13), rng.randrange(1, 29))
        if rng.random() < 0.3
        else None
    )
    address = (
        f"{rng.randrange(1, 999)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
        if rng.random() < 0.2
        else None
    )
    biography = rng.choice(BIOGRAPHIES) if rng.random() < 0.1 else None
    member_of = (rng.choice(groups),) if groups and rng.random() < 0.3 else ()
    return Person(
        resource_name=resource_name,
        seq=seq,
        updated=now,
        given_name=given,
        family_name=family,
        emails=(email,),
        phones=(phone,) if rng.random() < 0.7 else (),
        organization=organization,
        birthday=birthday,
        address=address,
        biography=biography,
        groups=member_of,
    )


def random_event_start(rng: random.Random, now: datetime) -> datetime:
    """A start time on the hour, between 30 days ago and 60 days ahead of `now`."""
    day = now.replace(minute=0, second=0, microsecond=0) + timedelta(days=rng.randrange(-30, 61))
    return day.replace(hour=rng.randrange(7, 20))
