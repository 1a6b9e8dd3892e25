"""The shared quota budget (SPEC 8): every request to a Google API spends from its budget.

Budgets are requests per sliding minute per API (settings `quota_calendar_per_minute`,
`quota_people_per_minute`), counted in the database (store/quota.py), so every thread and
process on it spends from one count. A request first takes its grant in one short write
transaction (decided by policy/quota.py under the write lock); when the minute is spent it
sleeps until the window frees exactly enough, computed from the buckets (no polling of the
lock), or, when that is longer than `quota_max_wait_seconds`, raises QuotaBudgetSpent: the
attempt fails with error class `quota` and is deferred by that wait, and no 429 is drawn.
OAuth token refreshes are not budgeted (they count against no API quota).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import sqlite_utils

from syncctl.clock import Clock
from syncctl.config import Settings
from syncctl.google.errors import QuotaBudgetSpent
from syncctl.policy.quota import may_spend, wait_for_room, window_start
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


class QuotaBudget:
    """Spends requests from the database's per-API budgets; one per orchestrator."""

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
            with transaction(self._db()) as conn:  # the decision and its record: one unit
                used = store.window_total(conn, api, window_start(now))
                if may_spend(used, requested=1, budget=budget):
                    store.record_spend(conn, api, second, 1)
                    if second // 60 != self._pruned_minute:
                        self._pruned_minute = second // 60
                        store.prune(conn, second)
                    return
                window = store.load_window(conn, api, window_start(now))
            wait = wait_for_room(window, now=now, requested=1, budget=budget)
            if waited + wait > self._max_wait:
                raise QuotaBudgetSpent(
                    f"the {api} quota budget of {budget} requests a minute is spent",
                    retry_after=None if math.isinf(wait) else wait,
                )
            self._sleep(wait)
            waited += wait
