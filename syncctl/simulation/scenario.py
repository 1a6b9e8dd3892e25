"""A simulated fleet and its script: who the users are, and what happens at Google, when.

A scenario is pure data derived from a seed, so every policy replays the same users, the same
changes at the same virtual times, the same revocation and the same outage.

Profiles (users are numbered `{prefix}-01`, `{prefix}-02`, ...):
- `busy`: a few changes (contacts and events) on most days.
- `occasional`: a change on about one day in four.
- `quiet`: no change at all, so the adaptive schedule backs off.
- `revoked`: busy, and its grant is revoked at Google a third of the way through.
- `failing`: busy, and every request of the user fails with 503 from half way through, so
  its breakers open.
With four users or more, the second is `revoked` and the third `failing`; the others cycle
through busy, quiet, occasional.

Scenario kinds (`--scenario`), each the standard fleet and script plus:
- `standard`: nothing more.
- `outage`: all of Google (token endpoint included) answers 503 to everyone for OUTAGE_HOURS,
  from noon of the middle day.
- `client-rotation`: at noon of the middle day the operator rotates the OAuth client's secret
  at Google, and only ROTATION_FIX_HOURS later updates the fleet's stored credentials (a
  re-import with the new secret): in between every refresh gets 401 invalid_client.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

DAY_SECONDS = 86400
BUSY_CHANGE_MOMENTS = (1, 4)  # change moments per day, inclusive range
OCCASIONAL_DAY_PROBABILITY = 0.25
CHANGES_PER_MOMENT = (1, 3)
REVOKE_AT_FRACTION = 1 / 3
FAIL_FROM_FRACTION = 1 / 2
FAILING_STATUS = 503
OUTAGE_HOURS = 6
ROTATION_FIX_HOURS = 2
SCENARIO_KINDS = ("standard", "outage", "client-rotation")


class Profile(StrEnum):
    """How a simulated user behaves."""

    BUSY = "busy"
    OCCASIONAL = "occasional"
    QUIET = "quiet"
    REVOKED = "revoked"
    FAILING = "failing"


CYCLE = (Profile.BUSY, Profile.QUIET, Profile.OCCASIONAL)


class Action(StrEnum):
    """What a script event does at the fake Google."""

    CHANGE = "change"  # `count` random changes to the user's contacts and events
    REVOKE = "revoke"  # the user's grant is revoked
    FAIL = "fail"  # every request of the user fails from now on
    OUTAGE_START = "outage_start"  # every request of everyone fails (Google-wide)
    OUTAGE_END = "outage_end"
    ROTATE_SECRET = "rotate_secret"  # the OAuth client's secret is rotated at Google
    UPDATE_SECRET = "update_secret"  # the operator re-imports the fleet with the new secret


@dataclass(frozen=True)
class FleetUser:
    """One simulated user and the size of its generated data."""

    user_id: str
    profile: Profile
    contacts: int
    groups: int
    calendars: int
    events_per_calendar: int


@dataclass(frozen=True, order=True)
class ScriptEvent:
    """One thing that happens at Google at a virtual time (`seq` keeps the order stable)."""

    at: datetime
    seq: int
    user_id: str
    action: Action
    count: int = 0


@dataclass(frozen=True)
class Scenario:
    """A fleet, a script and the simulated span, all fixed by the seed."""

    seed: int
    start: datetime
    days: int
    step_seconds: int
    users: tuple[FleetUser, ...]
    script: tuple[ScriptEvent, ...]
    kind: str = "standard"
    # The share of change notifications Google never sends (it does not promise delivery).
    drop_share: float = 0.0

    @property
    def end(self) -> datetime:
        """When the simulated span ends."""
        return self.start + timedelta(days=self.days)

    def steps(self) -> Iterator[datetime]:
        """Every virtual time at which cron would run `run-due`, from start to end inclusive."""
        moment, step = self.start, timedelta(seconds=self.step_seconds)
        while moment <= self.end:
            yield moment
            moment += step

    def profiles(self) -> dict[str, Profile]:
        """Each user's profile by user id."""
        return {user.user_id: user.profile for user in self.users}

    def moment_of(self, action: Action) -> datetime | None:
        """When the first event of this kind happens (None if the script has none)."""
        return next((event.at for event in self.script if event.action is action), None)

    def window(self) -> tuple[datetime, datetime] | None:
        """The outage or the client-rotation window of the scenario (None for `standard`)."""
        starts = {"outage": Action.OUTAGE_START, "client-rotation": Action.ROTATE_SECRET}
        ends = {"outage": Action.OUTAGE_END, "client-rotation": Action.UPDATE_SECRET}
        if self.kind not in starts:
            return None
        start, end = self.moment_of(starts[self.kind]), self.moment_of(ends[self.kind])
        return (start, end) if start and end else None

    def cut_offs(self) -> dict[str, datetime]:
        """Per user, when their requests stop succeeding for good (revocation, outage)."""
        found: dict[str, datetime] = {}
        for event in self.script:
            if event.action in (Action.REVOKE, Action.FAIL):
                found.setdefault(event.user_id, event.at)
        return found

    def summary(self) -> dict:
        """The scenario as plain data for reports."""
        counts: dict[str, int] = {}
        for user in self.users:
            counts[user.profile.value] = counts.get(user.profile.value, 0) + 1
        return {
            "seed": self.seed,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": self.days,
            "step_seconds": self.step_seconds,
            "users": len(self.users),
            "profiles": counts,
            "change_moments": sum(1 for e in self.script if e.action is Action.CHANGE),
            "changes": sum(e.count for e in self.script if e.action is Action.CHANGE),
            "revoked_at": _iso(self.moment_of(Action.REVOKE)),
            "failing_from": _iso(self.moment_of(Action.FAIL)),
            "kind": self.kind,
            "window": [_iso(at) for at in window] if (window := self.window()) else None,
            "dropped_notifications_share": self.drop_share,
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def assign_profiles(count: int) -> list[Profile]:
    """The profile of each of `count` users (see the module docstring)."""
    special = {1: Profile.REVOKED, 2: Profile.FAILING} if count >= 4 else {}
    profiles, cycle = [], 0
    for index in range(count):
        if index in special:
            profiles.append(special[index])
        else:
            profiles.append(CYCLE[cycle % len(CYCLE)])
            cycle += 1
    return profiles


def make_scenario(
    *,
    users: int,
    days: int,
    seed: int,
    start: datetime,
    step_seconds: int = 1800,
    prefix: str = "user",
    kind: str = "standard",
) -> Scenario:
    """A reproducible fleet of `users` and its script over `days` simulated days."""
    if users < 1 or days < 1 or step_seconds < 1:
        raise ValueError("users, days and step must be positive")
    if kind not in SCENARIO_KINDS:
        raise ValueError(f"unknown scenario {kind!r} (use {', '.join(SCENARIO_KINDS)})")
    rng = random.Random(f"{seed}:scenario")  # noqa: S311 (a reproducible script, no secret)
    width = max(2, len(str(users)))
    fleet = tuple(
        FleetUser(
            user_id=f"{prefix}-{index + 1:0{width}d}",
            profile=profile,
            contacts=rng.randint(5, 40),
            groups=rng.randint(0, 3),
            calendars=rng.randint(1, 3),
            events_per_calendar=rng.randint(3, 20),
        )
        for index, profile in enumerate(assign_profiles(users))
    )
    span = days * DAY_SECONDS
    moments: list[tuple[int, str, Action, int]] = []
    for user in fleet:
        if user.profile is Profile.REVOKED:
            moments.append((int(span * REVOKE_AT_FRACTION), user.user_id, Action.REVOKE, 0))
        if user.profile is Profile.FAILING:
            moments.append((int(span * FAIL_FROM_FRACTION), user.user_id, Action.FAIL, 0))
        for day in range(days):
            for offset in _change_offsets(rng, user.profile):
                count = rng.randint(*CHANGES_PER_MOMENT)
                moments.append((day * DAY_SECONDS + offset, user.user_id, Action.CHANGE, count))
    noon = (days // 2) * DAY_SECONDS + DAY_SECONDS // 2
    if kind == "outage":
        moments.append((noon, "", Action.OUTAGE_START, 0))
        moments.append((noon + OUTAGE_HOURS * 3600, "", Action.OUTAGE_END, 0))
    if kind == "client-rotation":
        moments.append((noon, "", Action.ROTATE_SECRET, 0))
        moments.append((noon + ROTATION_FIX_HOURS * 3600, "", Action.UPDATE_SECRET, 0))
    moments.sort(key=lambda m: (m[0], m[1], m[2].value))
    script = tuple(
        ScriptEvent(start + timedelta(seconds=offset), seq, user_id, action, count)
        for seq, (offset, user_id, action, count) in enumerate(moments)
    )
    return Scenario(seed, start, days, step_seconds, fleet, script, kind)


def _change_offsets(rng: random.Random, profile: Profile) -> list[int]:
    if profile is Profile.QUIET:
        return []
    if profile is Profile.OCCASIONAL:
        if rng.random() >= OCCASIONAL_DAY_PROBABILITY:
            return []
        return [rng.randrange(DAY_SECONDS)]
    return sorted(rng.randrange(DAY_SECONDS) for _ in range(rng.randint(*BUSY_CHANGE_MOMENTS)))
