"""Injected faults (fail_next, always-fail, latency) and exact per-user, per-endpoint counters."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

ENDPOINTS = (
    "oauth.authorize",
    "oauth.token",
    "oauth.tokeninfo",
    "people.connections.list",
    "people.contactGroups.list",
    "calendar.calendarList.list",
    "calendar.events.list",
    "calendar.events.watch",
    "calendar.channels.stop",
    "unknown",
)
OAUTH_ENDPOINTS = ("oauth.authorize", "oauth.token", "oauth.tokeninfo")


def family(endpoint: str) -> str:
    """`people`, `calendar`, `oauth` or `unknown`: which error shape an endpoint speaks."""
    return endpoint.split(".", 1)[0]


@dataclass(slots=True)
class FaultRule:
    """The next `remaining` matching requests fail with `status`."""

    status: int
    remaining: int
    user_id: str | None
    endpoint: str | None
    retry_after: float | None
    reason: str | None

    def matches(self, user_id: str | None, endpoint: str) -> bool:
        if self.user_id is not None and self.user_id != user_id:
            return False
        if self.endpoint is None:
            # Without an endpoint a rule targets the data APIs, not the token endpoint.
            return family(endpoint) in ("people", "calendar")
        return endpoint == self.endpoint or endpoint.startswith(self.endpoint + ".")


class Faults:
    """Thread-safe fault registry consulted once per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._always: dict[str, int] = {}
        self._outage: int | None = None  # every request of everyone fails with this status
        self.latency = 0.0

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def set_always(self, user_id: str, status: int | None) -> None:
        with self._lock:
            if status is None:
                self._always.pop(user_id, None)
            else:
                self._always[user_id] = status

    def set_outage(self, status: int | None) -> None:
        with self._lock:
            self._outage = status

    def clear(self, user_id: str | None) -> None:
        with self._lock:
            if user_id is None:
                self._rules.clear()
                self._always.clear()
                self._outage = None
                self.latency = 0.0
            else:
                self._rules = [rule for rule in self._rules if rule.user_id != user_id]
                self._always.pop(user_id, None)

    def take(self, user_id: str | None, endpoint: str) -> FaultRule | None:
        """The fault this request gets, consuming one use of a fail_next rule."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(user_id, endpoint):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule
            status = self._always.get(user_id) if user_id is not None else None
            if status is None:
                status = self._outage
            if status is not None and endpoint != "unknown":
                return FaultRule(status, 1, user_id, endpoint, None, None)
        return None


class Counters:
    """Requests received, by (user id or None, endpoint)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str | None, str]] = Counter()

    def add(self, user_id: str | None, endpoint: str) -> None:
        with self._lock:
            self._counts[(user_id, endpoint)] += 1

    def total(self, user_id: str | None = None, endpoint: str | None = None) -> int:
        with self._lock:
            return sum(
                count
                for (user, name), count in self._counts.items()
                if (user_id is None or user == user_id) and (endpoint is None or name == endpoint)
            )

    def snapshot(self) -> dict[tuple[str | None, str], int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
