"""A small demo fleet for `syncctl fake-google serve`, and credential files for it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncctl.fakegoogle.fake import FakeGoogle


def seed_fleet(
    fake: FakeGoogle,
    users: int,
    *,
    contacts: int = 25,
    groups: int = 2,
    calendars: int = 2,
    events_per_calendar: int = 10,
) -> dict[str, dict[str, Any]]:
    """Create users u1..uN with a few contacts, groups, calendars and events; return credentials."""
    return {
        f"u{n}": fake.add_user(
            f"u{n}",
            contacts=contacts,
            groups=groups,
            calendars=calendars,
            events_per_calendar=events_per_calendar,
        )
        for n in range(1, users + 1)
    }


def write_credentials(directory: Path, user_id: str, credentials: dict[str, Any]) -> Path:
    """Write `DIR/USER_ID.json` with mode 0600 (the directory is created 0700 if missing)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{user_id}.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(credentials, handle, indent=2)
        handle.write("\n")
    return path
