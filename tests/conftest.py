"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncctl.fakegoogle import FakeGoogle


@pytest.fixture
def fake_google() -> Iterator[FakeGoogle]:
    """A running fake Google on a free loopback port (seed 0, clock = syncctl.clock.utcnow)."""
    fake = FakeGoogle()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
