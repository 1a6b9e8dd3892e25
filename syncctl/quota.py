"""The shared quota budget (SPEC 8): every request to a Google API spends from its budget.

Budgets are requests per sliding minute per API (settings `quota_calendar_per_minute`,
`quota_people_per_minute`), counted in the database (store/quota.py), so every thread and
process on it spends from one count. A request first takes its grant in one short write
transaction (decided by policy/quota.py under the write lock); when the minute is spent it
sleeps until the window frees exactly enough, computed from the buckets (no polling of the
lock), or, when that is longer than `quota_max_wait_seconds`, raises QuotaBudgetSpent: the
attempt fails with error class `quota` and is deferred by that wait, and no 429 is drawn.
OAuth token refreshes are not budgeted (they count against no API quota).

One transaction per request cost as much CPU as the request itself at fleet scale, so a process
reserves a few grants at a time (policy.quota.reservation_size: one for budgets under 240 a
minute) in its current second's bucket, and its threads spend them only while the clock is in
that second. What is left when the second has passed is given back in the next reservation's
transaction (or by `release`, at the end of a run): a bucket never counts fewer requests than
were sent in its second, so no sliding minute holds more than the budget, whichever processes
spend from it. A process killed while holding grants leaves them counted for the minute.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from syncctl.clock import Clock
from syncctl.config import Settings
from syncctl.google.errors import QuotaBudgetSpent
from syncctl.policy.quota import grantable, reservation_size, wait_for_room, window_start
from syncctl.store import quota as store
from syncctl.store.db import transaction

CALENDAR = "calendar"
PEOPLE = "people"
APIS = (CALENDAR, PEOPLE)


def api_of(uri: str) -> str | None:
    """The budgeted API a request URI belongs to (Google's paths, real or fake), else None."""
    if "/calendar/v3/" in uri:
        return CALENDAR
    if "/v1/people" in uri or "/v1/contactGroups" in uri:
        return PEOPLE
    return None


def budgets(settings: Settings) -> dict[str, int]:
    """Requests a minute each API may spend."""
    return {
        CALENDAR: settings.quota_calendar_per_minute,
        PEOPLE: settings.quota_people_per_minute,
    }


@dataclass
class _Reserved:
    """Grants this process recorded in one second's bucket and has not spent yet."""

    second: int
    left: int


class QuotaBudget:
    """Spends requests from the database's per-API budgets; one per orchestrator, thread-safe."""

    def __init__(
        self,
        settings: Settings,
        db: Callable[[], sqlite_utils.Database],
        *,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._budgets = budgets(settings)
        self._max_wait = settings.quota_max_wait_seconds
        self._db = db
        self._clock = clock
        self._sleep = sleep
        self._pruned_minute: int | None = None
        self._reserved: dict[str, _Reserved] = {}
        self._lock = threading.Lock()  # taken inside the write transaction, never around one

    def spend(self, uri: str) -> None:
        """Take one request of the URI's API from its budget, waiting if the minute is spent."""
        api = api_of(uri)
        if api is None:
            return
        budget = self._budgets[api]
        waited = 0.0
        while True:
            now = self._clock().timestamp()
            second = math.floor(now)
            if self._take_reserved(api, second):
                return
            window = self._reserve(api, now, budget)
            if window is None:
                return
            wait = wait_for_room(window, now=now, requested=1, budget=budget)
            if waited + wait > self._max_wait:
                raise QuotaBudgetSpent(
                    f"the {api} quota budget of {budget} requests a minute is spent",
                    retry_after=None if math.isinf(wait) else wait,
                )
            self._sleep(wait)
            waited += wait

    def release(self) -> None:
        """Give back the grants reserved and not spent (the end of a run)."""
        with self._lock:
            if not self._reserved:
                return
        with transaction(self._db()) as conn, self._lock:
            for api, reserved in self._reserved.items():
                if reserved.left:
                    store.give_back(conn, api, reserved.second, reserved.left)
            self._reserved.clear()

    def _take_reserved(self, api: str, second: int) -> bool:
        with self._lock:
            reserved = self._reserved.get(api)
            if reserved is None or reserved.second != second or not reserved.left:
                return False
            reserved.left -= 1
            return True

    def _reserve(self, api: str, now: float, budget: int) -> list[tuple[int, int]] | None:
        """Record a reservation in this second's bucket and spend one of it (None), or return
        the window's buckets when the minute has no room."""
        second = math.floor(now)
        with transaction(self._db()) as conn, self._lock:  # the decision and its record: one unit
            reserved = self._reserved.get(api)
            if reserved is not None and reserved.second == second and reserved.left:
                reserved.left -= 1  # another thread reserved meanwhile
                return None
            if reserved is not None and reserved.second != second and reserved.left:
                store.give_back(conn, api, reserved.second, reserved.left)  # its second is over
            self._reserved.pop(api, None)
            used = store.window_total(conn, api, window_start(now))
            granted = grantable(used, wanted=reservation_size(budget), budget=budget)
            if granted:
                store.record_spend(conn, api, second, granted)
                self._reserved[api] = _Reserved(second, granted - 1)
                if second // 60 != self._pruned_minute:
                    self._pruned_minute = second // 60
                    store.prune(conn, second)
                return None
            return store.load_window(conn, api, window_start(now))
