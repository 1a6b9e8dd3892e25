"""Generate a realistic fleet and its sync_metrics history straight into a syncctl database.

Each (user, integration) pair is polled on its own interval (calendar 4 h, contacts 3 d; some
backed off to twice that, some calendars on webhooks with a 24 h safety poll), and attempts are
written in time order, as the orchestrator would write them, so row ids follow created_at.
Revoked users skip with `invalid_token` from their revocation on; a few pairs are in an
outage that has opened their breaker; there are transient and quota failures and full resyncs.

Usage: python benchmarks/metrics_gen.py DB [--users 10000] [--days 365]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncctl.clock import to_iso  # noqa: E402
from syncctl.store import open_database  # noqa: E402
from syncctl.store.report_queries import has_rollup  # noqa: E402
from syncctl.store.schema import (  # noqa: E402
    ROLLUP_BACKFILL,
    ROLLUP_MIGRATION,
    ROLLUP_TABLE,
)

CALENDAR, CONTACTS = "google_calendar", "google_contacts"
HOUR, DAY = 3600, 86400
DEFAULT = {CALENDAR: 4 * HOUR, CONTACTS: 3 * DAY}
WEBHOOK_SAFETY = 24 * HOUR
BATCH = 50_000
METRIC_COLUMNS = (
    "user_id, integration_type, sync_type, trigger, result, skip_reason, duration_ms,"
    " items_processed, items_added, items_updated, items_deleted, full_resync, api_calls_made,"
    " api_calls_saved, saved_by, error_class, error_message, created_at"
)


@dataclass
class Pair:
    """A simulated pair: its polling interval and what happens to it over the year."""

    user_id: str
    kind: str
    interval: int
    webhook: bool
    revoked_at: float | None
    outage_from: float | None
    calls: int
    last_at: float | None = None
    last_success: float | None = None
    failures: int = 0
    opened_at: float | None = None


def _pairs(rng: random.Random, users: int, start: float, end: float) -> list[Pair]:
    pairs = []
    for n in range(users):
        uid = f"user{n:05d}"
        revoked = end - rng.uniform(0, 60 * DAY) if rng.random() < 0.01 else None
        kinds = [CALENDAR, CONTACTS] if rng.random() < 0.9 else [rng.choice([CALENDAR, CONTACTS])]
        for kind in kinds:
            webhook = kind == CALENDAR and rng.random() < 0.3
            backed_off = rng.random() < (0.6 if kind == CALENDAR else 0.5)
            interval = WEBHOOK_SAFETY if webhook else DEFAULT[kind] * (2 if backed_off else 1)
            outage = end - rng.uniform(12, 72) * HOUR if rng.random() < 0.003 else None
            calls = 2 if kind == CONTACTS else rng.randint(2, 4)
            pairs.append(Pair(uid, kind, interval, webhook, revoked, outage, calls))
    return pairs


def _row(rng: random.Random, pair: Pair, at: float, trigger: str) -> tuple:
    """One attempt at time `at`; updates the pair's failure streak."""
    stamp = to_iso(datetime.fromtimestamp(at, UTC))
    saved, saved_by, sync_type = 0, None, "incremental"
    if pair.revoked_at is not None and at >= pair.revoked_at:
        return (pair.user_id, pair.kind, None, trigger, "skipped", "invalid_token", 0, 0, 0, 0,
                0, 0, 0, pair.calls + 1, "token_health", None, None, stamp)  # fmt: skip
    outage = pair.outage_from is not None and at >= pair.outage_from
    if outage and pair.failures >= 3:
        return (pair.user_id, pair.kind, None, trigger, "skipped", "circuit_open", 0, 0, 0, 0,
                0, 0, 0, pair.calls + 1, "circuit_breaker", None, None, stamp)  # fmt: skip
    roll = rng.random()
    if outage or roll < 0.015:
        pair.failures += 1
        if pair.failures == 3:
            pair.opened_at = at
        return (pair.user_id, pair.kind, sync_type, trigger, "failure", None,
                rng.randint(2000, 30000), 0, 0, 0, 0, 0, rng.randint(2, 6), 0, None,
                "transient", "HTTP 503 from Google (after 5 attempts)", stamp)  # fmt: skip
    if roll < 0.018:
        return (pair.user_id, pair.kind, sync_type, trigger, "failure", None,
                rng.randint(500, 5000), 0, 0, 0, 0, 0, rng.randint(2, 6), 0, None,
                "quota", "HTTP 429 rateLimitExceeded", stamp)  # fmt: skip
    pair.failures = 0
    pair.last_success = at
    full = int(roll > 0.998)
    made = pair.calls + 1 + (rng.randint(5, 40) if full else 0)
    changed = rng.random() < (0.3 if pair.kind == CALENDAR else 0.1)
    items = rng.randint(1, 20) if changed else 0
    if full:
        sync_type, items = "full", rng.randint(50, 800)
    if trigger == "webhook":
        saved, saved_by = rng.randint(1, 5) * pair.calls, "webhook"
    elif pair.interval > DEFAULT[pair.kind] and trigger == "scheduled":
        saved, saved_by = pair.calls + 1, "adaptive_schedule"
    return (pair.user_id, pair.kind, sync_type, trigger, "success", None,
            rng.randint(150, 4000), items, items // 2, items - items // 2, 0, full, made, saved,
            saved_by, None, None, stamp)  # fmt: skip


def generate(
    path: Path, *, users: int, days: int, end: datetime, seed: int = 1, rollup: bool = True
) -> int:
    """Write a fleet of `users` and `days` of metrics ending at `end`; returns the row count.

    With `rollup`, the database also gets the report's hourly rollup (if its schema lacks it).
    """
    rng = random.Random(seed)
    db = open_database(path)
    conn = db.conn
    end_s = end.timestamp()
    start_s = end_s - days * DAY
    pairs = _pairs(rng, users, start_s, end_s)
    # Indexes and rollup triggers are rebuilt after the bulk load: sorting once beats
    # maintaining them row by row.
    derived = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
        " AND tbl_name = 'sync_metrics' AND sql IS NOT NULL"
    ).fetchall()
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for kind, name, _ in derived:
        conn.execute(f"DROP {kind.upper()} {name}")
    # Events: (time, sequence, pair index, trigger). Each pair starts somewhere in its interval.
    events = [
        (start_s + rng.uniform(0, p.interval), i, i, "scheduled") for i, p in enumerate(pairs)
    ]
    heapq.heapify(events)
    sequence, rows, total = len(events), [], 0
    insert = f"INSERT INTO sync_metrics ({METRIC_COLUMNS}) VALUES ({', '.join('?' * 18)})"  # noqa: S608 - constants
    while events:
        at, _, index, trigger = heapq.heappop(events)
        if at > end_s:
            continue
        pair = pairs[index]
        rows.append(_row(rng, pair, at, trigger))
        pair.last_at = at
        sequence += 1
        if trigger == "scheduled":
            # Cron runs every 5 minutes, so a due pair waits up to that long.
            heapq.heappush(events, (at + pair.interval + rng.uniform(0, 300), sequence, index,
                                    "scheduled"))  # fmt: skip
            if pair.webhook and rng.random() < 0.8:
                heapq.heappush(events, (at + rng.uniform(0, pair.interval), -sequence, index,
                                        "webhook"))  # fmt: skip
            elif rng.random() < 0.01:
                heapq.heappush(events, (at + rng.uniform(0, pair.interval), -sequence, index,
                                        "manual"))  # fmt: skip
        if len(rows) >= BATCH:
            conn.executemany(insert, rows)
            total += len(rows)
            rows = []
    conn.executemany(insert, rows)
    total += len(rows)
    for _, _, sql in derived:
        conn.execute(sql)
    if has_rollup(conn):
        conn.execute(f"DELETE FROM {ROLLUP_TABLE}")  # noqa: S608 - a constant
        conn.execute(ROLLUP_BACKFILL)
    _write_state(conn, rng, pairs, users, end, end_s)
    conn.execute("COMMIT")
    if rollup and not has_rollup(conn):
        conn.executescript(ROLLUP_MIGRATION)
    conn.execute("ANALYZE")
    db.close()
    return total


def _write_state(conn, rng: random.Random, pairs: list[Pair], users: int, end, end_s) -> None:
    created = to_iso(end - timedelta(days=400))
    conn.executemany(
        "INSERT INTO users (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)",
        [(f"user{n:05d}", f"user{n:05d}@example.test", created, created) for n in range(users)],
    )
    conn.executemany(
        "INSERT INTO user_integrations VALUES (?, ?, ?)",
        [(p.user_id, p.kind, created) for p in pairs],
    )

    def at(seconds: float | None) -> str | None:
        return None if seconds is None else to_iso(datetime.fromtimestamp(seconds, UTC))

    health, breakers, schedule, notices = [], [], [], {}
    for p in pairs:
        revoked = p.revoked_at is not None
        status = "revoked" if revoked else rng.choice(["valid"] * 9 + ["expired"])
        health.append(
            (p.user_id, p.kind, status, at(p.last_at), "invalid_grant" if revoked else None)
        )
        if p.failures >= 3 and p.opened_at is not None:
            breakers.append((p.user_id, p.kind, "open", p.failures, at(p.last_at),
                             "transient: HTTP 503", at(p.opened_at),
                             at(p.opened_at + HOUR)))  # fmt: skip
        else:
            breakers.append((p.user_id, p.kind, "closed", p.failures, None, None, None, None))
        last = p.last_at or end_s
        next_at = last + p.interval if p.failures < 3 else last
        schedule.append((p.user_id, p.kind, DEFAULT[p.kind], p.interval, rng.randint(0, 5),
                         at(last), at(next_at)))  # fmt: skip
        if revoked:
            notices[p.user_id] = at(p.revoked_at)
    conn.executemany("INSERT INTO token_health VALUES (?, ?, ?, ?, ?)", health)
    conn.executemany("INSERT INTO circuit_breaker_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)", breakers)
    conn.executemany(
        "INSERT INTO sync_schedule (user_id, integration_type, default_frequency_seconds,"
        " current_frequency_seconds, consecutive_no_changes, last_sync_at, next_sync_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        schedule,
    )
    conn.executemany(
        "INSERT INTO notifications (user_id, kind, message, created_at) VALUES"
        " (?, 'reconnect_required', 'Google access was revoked; reconnect', ?)",
        list(notices.items()),
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--end", default="2026-06-30T12:00:00+00:00")
    args = parser.parse_args()
    if args.db.exists():
        parser.error(f"{args.db} exists; remove it first")
    began = time.perf_counter()
    rows = generate(args.db, users=args.users, days=args.days,
                    end=datetime.fromisoformat(args.end))  # fmt: skip
    print(f"{rows:,} sync_metrics rows in {time.perf_counter() - began:.0f} s -> {args.db}")


if __name__ == "__main__":
    main()
