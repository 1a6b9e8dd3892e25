"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet

from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.google import GoogleSession
from syncctl.store import open_database
from syncctl.users import parse_credentials

# One secret key for the whole run, in the environment of every test and in the key file of an
# XDG config home of the run's own (commands started without SYNCCTL_* variables find it there,
# and nothing is written under the real home); tests of keys change or remove them.
SECRET_KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="session", autouse=True)
def secret_key(tmp_path_factory) -> Iterator[str]:
    """SYNCCTL_SECRET_KEY for the whole run, also in $XDG_CONFIG_HOME/syncctl/secret.key
    (session-wide, so module fixtures that store users see it too)."""
    home = tmp_path_factory.mktemp("xdg-config")
    (home / "syncctl").mkdir(mode=0o700)
    key_file = home / "syncctl" / "secret.key"
    key_file.write_text(SECRET_KEY + "\n")
    key_file.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNCCTL_SECRET_KEY", SECRET_KEY)
        patch.setenv("XDG_CONFIG_HOME", str(home))
        yield SECRET_KEY


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
