"""The operator's report: plain-data figures from the store, the same for table, JSON, Prometheus
and HTML. Rendering lives elsewhere (`syncctl.report_render`, `syncctl.cli.report`).

Definitions (documented in the README, section "The report"):
- window: attempts with `since <= created_at <= now`; `daily` buckets them by UTC date.
- success_rate_percent: success / (success + failure) * 100; gated skips are not syncs. None
  when nothing ran.
- saved: the sum of `api_calls_saved`, measured against one counterfactual for every mechanism
  (`api_calls.counterfactual`: naive polling of every pair at its default interval, same
  engines and retries; method in syncctl.policy.savings); it may be negative.
- saved_share_percent: saved / (made + saved) * 100, the share of the calls a naive poller
  would have made that were avoided. None when both are zero.
- breakers.fleet: the fleet breaker of each Google API (closed unless stored otherwise), with
  the evidence of its current window and its rolling run of transient failures in a row.
- staleness: now - the pair's last successful sync (ever, not only in the window); pairs never
  synced are counted in `never_synced` and lead the `worst` list. p50/p95 use the nearest-rank
  method over pairs with a success. `overdue` counts pairs staler than their current interval.
- next_run: pairs with `next_sync_at <= now`; those the gate (policy.gate) skips, a revoked
  token or a breaker open (or half-open with its trial lease held), will be skipped; the rest
  are expected to cost the pair's recent mean (store.metrics.recent_mean_sql: its last
  successful incremental syncs, trials left out), else the integration's mean over the window,
  else policy.savings.FALLBACK_CALLS_PER_SYNC.
- mass_delete_holds: pairs whose sync the mass-delete guard held, oldest first (SPEC 3).
- quota: per API, its budget a minute, the requests granted in the sliding minute before now
  (and their share of the budget), and the busiest whole minute of the last hour (SPEC 8).
- unreadable_values: the `table.column`s holding a stored time that does not parse or is out of
  range (hand-edited, or an old bug); each such time reads as unknown (None) and is left out of
  the figures
  that need it (a pair whose last success does not read counts as never synced; a
  next_sync_at that does not read makes the pair due, as in the run). Empty when all is well.
"""

from __future__ import annotations

import heapq
import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta

import sqlite_utils

from syncctl import quota
from syncctl.clock import from_iso, from_stored, to_iso
from syncctl.config import Settings
from syncctl.model import (
    ALL_INTEGRATIONS,
    BreakerState,
    ErrorClass,
    Result,
    SavedBy,
    SkipReason,
    TokenStatus,
    Trigger,
)
from syncctl.policy import savings
from syncctl.policy.fleet_breaker import API_NAMES, Api
from syncctl.policy.gate import gate
from syncctl.policy.quota import WINDOW_SECONDS, window_start
from syncctl.policy.schedule import is_due
from syncctl.store import holds as hold_store
from syncctl.store import quota as quota_store
from syncctl.store import report_queries as q
from syncctl.store import state as state_store
from syncctl.store.fleet_breaker import load_fleet_breakers
from syncctl.store.readback import LONG_AGO
from syncctl.users import BadInput, require_user

REPORT_VERSION = 1
WORST_PAIRS = 5
HISTORY_LIMIT = 500
MAX_WINDOW_DAYS = 3660  # ten years of daily buckets at most
# Only the trial lease a gate would store depends on settings, never whether a pair runs.
_GATE_SETTINGS = Settings()

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
UNCLASSIFIED = "unclassified"


def parse_duration(text: str) -> timedelta:
    """Parse `30m`, `24h`, `7d`, `2w` (or `90s`) into a positive timedelta; BadInput otherwise."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise BadInput(f"bad duration {text!r}: use a positive number and s, m, h, d or w, e.g. 7d")
    seconds = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    if seconds > MAX_WINDOW_DAYS * 86400:
        raise BadInput(f"bad duration {text!r}: at most {MAX_WINDOW_DAYS}d")
    return timedelta(seconds=seconds)


class StoredTimes:
    """Times read back from the store as the report shows them: the canonical UTC ISO string,
    or None for one that does not read (SPEC 1), noting its `table.column`."""

    def __init__(self) -> None:
        self.unreadable: set[str] = set()

    def moment(self, value: object, column: str) -> datetime | None:
        """The stored value as a datetime (None when absent or unreadable)."""
        moment = from_stored(value)
        if moment is None and value is not None and value != "":
            self.unreadable.add(column)
        return moment

    def stamp(self, value: object, column: str) -> str | None:
        """The stored value as the canonical string (None when absent or unreadable)."""
        moment = self.moment(value, column)
        return None if moment is None else to_iso(moment)


def build_report(
    db: sqlite_utils.Database,
    *,
    now: datetime,
    since: timedelta,
    user_id: str | None = None,
    settings: Settings | None = None,
) -> dict:
    """Every figure of the report as plain data with stable keys (see the module docstring)."""
    if user_id is not None:
        require_user(db, user_id)
    read = StoredTimes()
    with _snapshot(db.conn):
        figures = _figures(db.conn, now, since, user_id, read)
        figures["mass_delete_holds"] = _holds(db.conn, user_id, read)
        figures["quota"] = _quota(db.conn, now, settings or Settings())
    figures["unreadable_values"] = sorted(read.unreadable)
    return figures


def _holds(conn: sqlite3.Connection, user_id: str | None, read: StoredTimes) -> list[dict]:
    return [
        {
            "user_id": hold.user_id,
            "integration": hold.integration.cli_name,
            "mirror": hold.mirror,
            "mirrored": hold.mirrored,
            "deleting": hold.deleting,
            "held_at": read.stamp(hold.held_at, "mass_delete_holds.held_at"),
        }
        for hold in hold_store.list_holds(conn, user_id)
    ]


def _quota(conn: sqlite3.Connection, now: datetime, settings: Settings) -> dict:
    moment = now.timestamp()
    used = quota_store.usage_since(conn, window_start(moment))
    hour_ago = math.floor(moment) - 3600
    apis = {}
    for api, budget in quota.budgets(settings).items():
        spent = used.get(api, 0)
        apis[api] = {
            "budget_per_minute": budget,
            "used_in_window": spent,
            "used_percent": _percent(spent, budget),
            "peak_minute_last_hour": quota_store.peak_minute(conn, api, hour_ago),
        }
    return {"window_seconds": WINDOW_SECONDS, "apis": apis}


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction, so a run-due writing meanwhile cannot split the figures."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _figures(
    conn: sqlite3.Connection,
    now: datetime,
    since: timedelta,
    user_id: str | None,
    read: StoredTimes,
) -> dict:
    start, end = to_iso(now - since), to_iso(now)
    users, with_integrations = q.count_users(conn, user_id)
    groups = q.window_groups(conn, start, end, user_id)
    freshness = _freshness(conn, end, user_id, read)
    return {
        "report_version": REPORT_VERSION,
        "generated_at": end,
        "window": {"since": start, "until": end, "seconds": int(since.total_seconds())},
        "user_id": user_id,
        "fleet": {
            "users": users,
            "users_with_integrations": with_integrations,
            "integrations": _integrations(q.integration_counts(conn, user_id)),
        },
        "token_health": _token_health(conn, user_id, read),
        "breakers": _breakers(conn, user_id, read),
        "syncs": _by_integration(groups, _sync_figures),
        "api_calls": {
            **_by_integration(groups, _api_figures),
            "counterfactual": savings.COUNTERFACTUAL,
        },
        "staleness": _staleness(freshness, now),
        "next_run": _next_run(
            conn,
            now,
            user_id,
            lambda: groups if user_id is None else q.window_groups(conn, start, end, None),
            read,
        ),
        "daily": _daily(groups, now - since, now),
        "user": _user_detail(conn, user_id, start, end, now, freshness, read) if user_id else None,
    }


def _freshness(
    conn: sqlite3.Connection, end: str, user_id: str | None, read: StoredTimes
) -> list[q.PairFreshness]:
    return [
        replace(
            pair,
            last_success_at=read.stamp(pair.last_success_at, "sync_metrics.created_at"),
            interval_seconds=_stored_seconds(pair.interval_seconds),
        )
        for pair in q.pair_freshness(conn, end, user_id)
    ]


def _stored_seconds(value: object) -> int | None:
    """A stored interval as whole seconds; anything else (text, a fraction) reads as unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _names() -> list[str]:
    return [i.cli_name for i in ALL_INTEGRATIONS]


_CLI_NAMES = {i.value: i.cli_name for i in ALL_INTEGRATIONS}


def _cli_name(integration_type: str) -> str:
    return _CLI_NAMES.get(integration_type, integration_type)


def _total_and_split(per: dict[str, dict], keys: Iterable[str]) -> dict:
    total = {key: sum(block[key] for block in per.values()) for key in keys}
    return {"total": total, "by_integration": per}


def _integrations(rows: list[tuple[str, int, int]]) -> dict:
    per = {name: {"enabled": 0, "active": 0} for name in _names()}
    for kind, enabled, active in rows:
        per[_cli_name(kind)] = {"enabled": int(enabled), "active": int(active or 0)}
    return _total_and_split(per, ("enabled", "active"))


def _state_split(rows: list[tuple[str, str, int]], values: list[str]) -> dict:
    per = {name: dict.fromkeys(values, 0) for name in _names()}
    for kind, value, count in rows:
        block = per.setdefault(_cli_name(kind), dict.fromkeys(values, 0))
        block[value] = block.get(value, 0) + int(count)
    keys = list(dict.fromkeys(k for block in per.values() for k in block))
    return _total_and_split(per, keys)


def _token_health(conn, user_id: str | None, read: StoredTimes) -> dict:
    figures = _state_split(
        q.state_counts(conn, "token_health", "status", user_id), [s.value for s in TokenStatus]
    )
    revoked: dict[str, dict] = {}
    for uid, kind, last_checked in q.revoked_pairs(conn, user_id):
        entry = revoked.setdefault(uid, {"integrations": set(), "checked": []})
        entry["integrations"].add(_cli_name(kind))
        if checked := read.stamp(last_checked, "token_health.last_checked"):
            entry["checked"].append(checked)
    notices = {
        uid: read.stamp(created_at, "notifications.created_at")
        for uid, created_at in q.open_reconnect_notices(conn, user_id)
    }
    listed = []
    for uid in sorted(set(revoked) | set(notices)):
        entry = revoked.get(uid, {"integrations": set(), "checked": []})
        since = notices.get(uid) or min(entry["checked"], default=None)
        listed.append(
            {"user_id": uid, "integrations": sorted(entry["integrations"]), "since": since}
        )
    listed.sort(key=lambda e: (e["since"] is None, e["since"] or "", e["user_id"]))
    figures["reconnect_required"] = listed
    return figures


def _breakers(conn, user_id: str | None, read: StoredTimes) -> dict:
    figures = _state_split(
        q.state_counts(conn, "circuit_breaker_state", "state", user_id),
        [s.value for s in BreakerState],
    )
    figures["open"] = [
        {
            "user_id": uid,
            "integration": _cli_name(kind),
            "failure_count": count,
            "reason": reason,
            "opened_at": read.stamp(opened_at, "circuit_breaker_state.opened_at"),
            "next_retry_at": read.stamp(retry_at, "circuit_breaker_state.next_retry_at"),
        }
        for uid, kind, count, reason, opened_at, retry_at in q.open_breakers(conn, user_id)
    ]
    figures["fleet"] = fleet_breakers(conn, read)
    return figures


def fleet_breakers(conn: sqlite3.Connection, read: StoredTimes | None = None) -> list[dict]:
    """The fleet breaker of every Google API, closed with an empty window when none is stored."""
    read = read or StoredTimes()
    stored = {row["api"]: row for row in load_fleet_breakers(conn)}
    rows = []
    for api in Api:
        row = stored.get(api.value, {})
        rows.append(
            {
                "api": api.value,
                "name": API_NAMES[api],
                "state": row.get("state") or BreakerState.CLOSED.value,
                "attempts": row.get("attempts") or 0,
                "transient_failures": row.get("transient_failures") or 0,
                **{
                    name: read.stamp(row.get(name), f"fleet_breaker.{name}")
                    for name in ("window_started_at", "opened_at", "last_probe_at")
                },
                "last_failure_reason": row.get("last_failure_reason"),
                "consecutive_failures": row.get("consecutive_failures") or 0,
                "last_evidence_at": row.get("last_evidence_at"),
            }
        )
    return rows


def _percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 2)


def _sync_figures(groups: list[q.WindowGroup]) -> dict:
    count = {r.value: 0 for r in Result}
    skips = {s.value: 0 for s in SkipReason}
    triggers = {t.value: 0 for t in Trigger}
    failures = {c.value: 0 for c in ErrorClass} | {UNCLASSIFIED: 0}
    full_resyncs = items = 0
    for g in groups:
        count[g.result] = count.get(g.result, 0) + g.attempts
        triggers[g.trigger] = triggers.get(g.trigger, 0) + g.attempts
        if g.result == Result.SKIPPED and g.skip_reason:
            skips[g.skip_reason] = skips.get(g.skip_reason, 0) + g.attempts
        if g.result == Result.FAILURE:
            key = g.error_class or UNCLASSIFIED
            failures[key] = failures.get(key, 0) + g.attempts
        full_resyncs += g.full_resyncs or 0
        items += g.items_processed or 0
    ran = count[Result.SUCCESS] + count[Result.FAILURE]
    return {
        "attempts": sum(g.attempts for g in groups),
        **count,
        "skipped_by_reason": skips,
        "success_rate_percent": _percent(count[Result.SUCCESS], ran),
        "failures_by_class": failures,
        "by_trigger": triggers,
        "full_resyncs": full_resyncs,
        "items_processed": items,
    }


def _api_figures(groups: list[q.WindowGroup]) -> dict:
    made = sum(g.api_calls_made or 0 for g in groups)
    saved = sum(g.api_calls_saved or 0 for g in groups)
    by_mechanism = {s.value: 0 for s in SavedBy}
    for g in groups:
        if g.api_calls_saved:
            key = g.saved_by or UNCLASSIFIED
            by_mechanism[key] = by_mechanism.get(key, 0) + g.api_calls_saved
    return {
        "made": made,
        "saved": saved,
        "saved_share_percent": _percent(saved, made + saved),
        "saved_by": by_mechanism,
    }


def _by_integration(groups: list[q.WindowGroup], figures) -> dict:
    per: dict[str, list[q.WindowGroup]] = {name: [] for name in _names()}
    for g in groups:
        per.setdefault(_cli_name(g.integration_type), []).append(g)
    return {
        "total": figures(groups),
        "by_integration": {name: figures(rows) for name, rows in per.items()},
    }


def nearest_rank(sorted_values: list[int], percentile: float) -> int | None:
    """The nearest-rank percentile of ascending values (None for no values)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(percentile / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _staleness(pairs: list[q.PairFreshness], now: datetime) -> dict:
    per: dict[str, list[q.PairFreshness]] = {name: [] for name in _names()}
    for pair in pairs:
        per.setdefault(_cli_name(pair.integration_type), []).append(pair)
    return {"by_integration": {name: _staleness_of(rows, now) for name, rows in per.items()}}


def _staleness_of(pairs: list[q.PairFreshness], now: datetime) -> dict:
    now_ts = now.timestamp()
    aged = [
        (
            p,
            None
            if p.last_success_at is None
            else int(now_ts - from_iso(p.last_success_at).timestamp()),
        )
        for p in pairs
    ]
    ages = sorted(age for _, age in aged if age is not None)
    intervals = sorted(p.interval_seconds for p in pairs if p.interval_seconds is not None)
    # Never-synced pairs are the stalest of all; ties broken by user id for a stable list.
    worst = heapq.nsmallest(
        WORST_PAIRS, aged, key=lambda pa: (pa[1] is not None, -(pa[1] or 0), pa[0].user_id)
    )
    return {
        "pairs": len(pairs),
        "synced": len(ages),
        "never_synced": len(pairs) - len(ages),
        "p50_seconds": nearest_rank(ages, 50),
        "p95_seconds": nearest_rank(ages, 95),
        "max_seconds": ages[-1] if ages else None,
        "expected_interval_seconds": nearest_rank(intervals, 50),
        "overdue": sum(
            1
            for pair, age in aged
            if age is not None and pair.interval_seconds is not None and age > pair.interval_seconds
        ),
        "worst": [
            {
                "user_id": pair.user_id,
                "last_success_at": pair.last_success_at,
                "staleness_seconds": age,
                "interval_seconds": pair.interval_seconds,
            }
            for pair, age in worst
        ],
    }


def _fleet_means(groups: list[q.WindowGroup]) -> dict[str, float]:
    """Mean api_calls_made of the window's successful syncs, per integration type."""
    made: dict[str, int] = {}
    count: dict[str, int] = {}
    for g in groups:
        if g.result == Result.SUCCESS:
            made[g.integration_type] = made.get(g.integration_type, 0) + (g.api_calls_made or 0)
            count[g.integration_type] = count.get(g.integration_type, 0) + g.attempts
    return {kind: made[kind] / count[kind] for kind in count if count[kind]}


def _next_run(
    conn,
    now: datetime,
    user_id: str | None,
    fleet_groups: Callable[[], list[q.WindowGroup]],
    read: StoredTimes,
) -> dict:
    # The same gate the run decides with (policy.gate), so the dry run, this figure and the
    # run agree; the gate's skip-or-run answer does not depend on the settings.
    due = state_store.due_pairs(conn, now, user_id=user_id, with_cost=True)
    fallback: dict[str, float] | None = None
    blank = {"due": 0, "will_run": 0, "skip_revoked": 0, "skip_breaker_open": 0}
    per = {name: dict(blank, expected_api_calls=0.0) for name in _names()}
    for pair in due:
        due_at = read.moment(pair.next_sync_at, "sync_schedule.next_sync_at")
        if not is_due(due_at or LONG_AGO, now, held=pair.mass_delete_held):
            continue  # held by the mass-delete guard: not due until an operator acts
        block = per.setdefault(pair.integration.cli_name, dict(blank, expected_api_calls=0.0))
        block["due"] += 1
        decision = gate(pair.token_status, pair.breaker, now, _GATE_SETTINGS)
        if decision.skip_reason is SkipReason.INVALID_TOKEN:
            block["skip_revoked"] += 1
            continue
        if decision.skip_reason is SkipReason.CIRCUIT_OPEN:
            block["skip_breaker_open"] += 1
            continue
        block["will_run"] += 1
        cost = pair.recent_calls_per_sync
        if cost is None:
            if fallback is None:
                fallback = _fleet_means(fleet_groups())
            cost = fallback.get(pair.integration.value)
        block["expected_api_calls"] += savings.calls_per_sync(pair.integration, cost)
    figures = _total_and_split(per, (*blank, "expected_api_calls"))
    for block in (figures["total"], *per.values()):
        block["expected_api_calls"] = round(block["expected_api_calls"], 1)
    figures["fallback_calls_per_sync"] = {
        i.cli_name: savings.FALLBACK_CALLS_PER_SYNC[i] for i in ALL_INTEGRATIONS
    }
    return figures


def _daily(groups: list[q.WindowGroup], start: datetime, end: datetime) -> list[dict]:
    days: dict[str, dict] = {}
    day = start.date()
    while day <= end.date():
        days[day.isoformat()] = {
            "date": day.isoformat(),
            **{r.value: 0 for r in Result},
            "api_calls_made": 0,
            "api_calls_saved": 0,
        }
        day += timedelta(days=1)
    for g in groups:
        bucket = days.get(g.day)
        if bucket is None:
            continue
        bucket[g.result] = bucket.get(g.result, 0) + g.attempts
        bucket["api_calls_made"] += g.api_calls_made or 0
        bucket["api_calls_saved"] += g.api_calls_saved or 0
    return list(days.values())


# The user's state columns that hold times, by the report's name and the stored column.
_USER_TIMES = {
    "token_last_checked": "token_health.last_checked",
    "breaker_next_retry_at": "circuit_breaker_state.next_retry_at",
    "last_sync_at": "sync_schedule.last_sync_at",
    "next_sync_at": "sync_schedule.next_sync_at",
}

_USER_INTERVALS = ("default_frequency_seconds", "current_frequency_seconds")


def _user_detail(
    conn,
    user_id: str,
    start: str,
    end: str,
    now: datetime,
    freshness: list[q.PairFreshness],
    read: StoredTimes,
) -> dict:
    uid, email, created_at = q.user_record(conn, user_id) or (user_id, None, None)
    pairs = []
    last_success = {p.integration_type: p.last_success_at for p in freshness}
    for row in q.user_pairs(conn, user_id):
        kind = row.pop("integration_type")
        last = last_success.get(kind)
        age = int((now - from_iso(last)).total_seconds()) if last else None
        pairs.append(
            {
                "integration": _cli_name(kind),
                **row,
                **{name: read.stamp(row[name], column) for name, column in _USER_TIMES.items()},
                **{name: _stored_seconds(row[name]) for name in _USER_INTERVALS},
                "last_success_at": last,
                "staleness_seconds": age,
            }
        )
    order = _names()
    pairs.sort(key=lambda p: order.index(p["integration"]) if p["integration"] in order else 9)
    history = q.user_history(conn, user_id, start, end, limit=HISTORY_LIMIT + 1)
    history = [
        {
            "created_at": read.stamp(row.pop("created_at"), "sync_metrics.created_at"),
            "integration": _cli_name(row.pop("integration_type")),
            **row,
            "full_resync": bool(row["full_resync"]),
        }
        for row in history
    ]
    return {
        "id": uid,
        "email": email,
        "created_at": read.stamp(created_at, "users.created_at"),
        "integrations": pairs,
        "history": history[:HISTORY_LIMIT],
        "history_truncated": len(history) > HISTORY_LIMIT,
    }
