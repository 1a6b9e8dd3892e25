"""The virtual clock a simulated run shares between the orchestrator and the fake Google."""

from __future__ import annotations

import threading
from datetime import datetime


class VirtualClock:
    """A clock that moves only when told to; its `sleep` returns at once.

    Within one `run-due` the clock stands still: retry back-offs (at most a few seconds each)
    are recorded in `slept_seconds` but do not move simulated time, so a run is reproducible and
    never waits in real time.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the virtual clock needs an aware datetime")
        self._now = start
        self._lock = threading.Lock()
        self.slept_seconds = 0.0

    def now(self) -> datetime:
        """The current virtual time."""
        return self._now

    def advance_to(self, moment: datetime) -> None:
        """Move the clock forward to `moment` (never backwards)."""
        if moment < self._now:
            raise ValueError(f"the virtual clock cannot go back from {self._now} to {moment}")
        self._now = moment

    def sleep(self, seconds: float) -> None:
        """Return at once, counting the seconds a real sleep would have taken."""
        with self._lock:
            self.slept_seconds += max(0.0, seconds)
