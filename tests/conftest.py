"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.google import GoogleSession
from syncctl.store import open_database
from syncctl.users import parse_credentials


@pytest.fixture
def fake_google() -> Iterator[FakeGoogle]:
    """A running fake Google on a free loopback port (seed 0, clock = syncctl.clock.utcnow)."""
    fake = FakeGoogle()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def db(tmp_path):
    """A fresh syncctl database in the test's temporary directory."""
    database = open_database(tmp_path / "syncctl.db")
    yield database
    database.close()


def session_for(fake: FakeGoogle, info: dict[str, Any]) -> GoogleSession:
    """A fresh session (as each orchestrated attempt has) on the fake, with instant retries."""
    settings = Settings(google_endpoint=fake.base_url, retry_max_attempts=2)
    return GoogleSession(parse_credentials(info), settings, now=utcnow, sleep=lambda _: None)
