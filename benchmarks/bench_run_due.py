"""Time `run-due --dry-run` over 100,000 users, and run-due throughput against a slow fake Google.

Run: python benchmarks/bench_run_due.py [--users 100000] [--due 1000] [--sync-users 64]
     [--latency 0.1] [--fake-in-thread]

1. Planning. A database of N users (contacts and calendar each, so 2N scheduled pairs) is built
   with `save_users` in batches; then every pair is moved into the future (nothing due), or the
   first D pairs into the past (a tenth of those revoked, a tenth behind an open breaker, so the
   plan gives all three reasons). Timed: the real `syncctl --db X run-due --dry-run --json`
   subprocess (median of 3, process start-up included; `syncctl --help` is shown as the start-up
   baseline) and the in-process `fleet.plan_due()` (median of 5).
2. Throughput. The fake Google runs in a separate process (or, with --fake-in-thread, on a thread
   of this one, sharing its GIL) with M calendar-only users of one calendar. After a first full
   run without latency, the fake answers every request after `--latency` seconds and every pair
   is made due again before each timed `run_due(concurrency=K)` (in-process, incremental syncs,
   access tokens still fresh); each concurrency above 1 is run --repeat times and the median
   run is shown. The latency bound is K / (requests per sync x latency).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from syncctl import fleet
from syncctl.clock import to_iso, utcnow
from syncctl.config import Settings, load_settings
from syncctl.model import ALL_INTEGRATIONS, Integration, UserCredentials
from syncctl.orchestrator import Orchestrator, orchestrator
from syncctl.store import open_database, transaction
from syncctl.store.users import UserGrant
from syncctl.users import parse_credentials, save_grants

BATCH = 5000
SYNCCTL = [sys.executable, "-m", "syncctl"]


# -- 1. planning over a large fleet ------------------------------------------------------------


def build_fleet(db_path: Path, count: int) -> float:
    """Create `count` users with both integrations; return the seconds it took."""
    started = time.perf_counter()
    settings = load_settings(db=db_path, env={})
    db = open_database(db_path)
    now = utcnow()
    for first in range(0, count, BATCH):
        grants = [
            UserGrant(
                f"user-{index:06d}",
                UserCredentials(
                    client_id="bench-client.apps.example",
                    client_secret="bench-secret",
                    refresh_token=f"bench-refresh-{index}",
                ),
                f"user{index}@example.test",
                ALL_INTEGRATIONS,
            )
            for index in range(first, min(count, first + BATCH))
        ]
        save_grants(db, settings, grants, now=now)
    db.close()
    return time.perf_counter() - started


def make_due(db_path: Path, due: int) -> None:
    """Everything in the future, except the first `due` pairs (some revoked, some breaker-open)."""
    db = open_database(db_path)
    now = utcnow()
    future, past = to_iso(now + timedelta(days=1)), to_iso(now - timedelta(hours=1))
    retry_at = to_iso(now + timedelta(minutes=30))
    with transaction(db) as conn:
        conn.execute("UPDATE sync_schedule SET next_sync_at = ?", [future])
        conn.execute("UPDATE token_health SET status = 'unknown'")
        conn.execute("UPDATE circuit_breaker_state SET state = 'closed', next_retry_at = NULL")
        rows = conn.execute(
            "SELECT user_id, integration_type FROM sync_schedule ORDER BY user_id, integration_type"
            " LIMIT ?",
            [due],
        ).fetchall()
        conn.executemany(
            "UPDATE sync_schedule SET next_sync_at = ? WHERE user_id = ? AND integration_type = ?",
            [(past, *row) for row in rows],
        )
        conn.executemany(
            "UPDATE token_health SET status = 'revoked' WHERE user_id = ? AND integration_type = ?",
            rows[0::10],
        )
        conn.executemany(
            "UPDATE circuit_breaker_state SET state = 'open', failure_count = 3, next_retry_at = ?"
            " WHERE user_id = ? AND integration_type = ?",
            [(retry_at, *row) for row in rows[5::10]],
        )
    db.close()


def median_seconds(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def dry_run_subprocess(db_path: Path) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(
            [*SYNCCTL, "--db", str(db_path), "run-due", "--dry-run", "--json"],
            check=True,
            capture_output=True,
        )

    return run


def plan_in_process(db_path: Path, expected: int) -> Callable[[], None]:
    settings = load_settings(db=db_path, env={})

    def run() -> None:
        runner = Orchestrator(settings)
        try:
            plans = fleet.plan_due(runner)
        finally:
            runner.close()
        if len(plans) != expected:
            raise SystemExit(f"plan_due found {len(plans)} due pairs, expected {expected}")

    return run


def bench_planning(users: int, due: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "fleet.db"
        rows.append((f"build {users:,} users (save_users)", build_fleet(db_path, users)))
        startup = median_seconds(
            lambda: subprocess.run([*SYNCCTL, "--help"], check=True, capture_output=True), 3
        )
        rows.append(("syncctl --help (start-up baseline)", startup))
        for label, count in (("nothing due", 0), (f"{due:,} due", due)):
            make_due(db_path, count)
            subprocess_seconds = median_seconds(dry_run_subprocess(db_path), 3)
            rows.append((f"run-due --dry-run --json, {label}", subprocess_seconds))
            in_process_seconds = median_seconds(plan_in_process(db_path, count), 5)
            rows.append((f"plan_due() in process, {label}", in_process_seconds))
    return rows


# -- 2. throughput against the fake Google -----------------------------------------------------


def serve_fake(conn: Connection, users: int) -> None:
    """The fake Google's process: seed users, then answer control commands until `stop`."""
    from syncctl.fakegoogle import FakeGoogle

    fake = FakeGoogle()
    base_url = fake.start()
    fleet = {
        f"bench-{n:03d}": fake.add_user(f"bench-{n:03d}", calendars=1, events_per_calendar=5)
        for n in range(users)
    }
    conn.send((base_url, fleet))
    while True:
        command, argument = conn.recv()
        if command == "latency":
            fake.set_latency(argument)
            conn.send(None)
        elif command == "count":
            conn.send(fake.request_count())
        elif command == "cpu":  # the fake's own CPU seconds (bench_fleet: where the time goes)
            conn.send(time.process_time())
        else:
            fake.stop()
            conn.send(None)
            return


class FakeProcess:
    """Drives a fake Google in another process (or a thread) through a pipe."""

    def __init__(self, users: int, *, in_thread: bool) -> None:
        import threading

        self._conn, child = multiprocessing.Pipe()
        if in_thread:
            self._worker: Any = threading.Thread(
                target=serve_fake, args=(child, users), daemon=True
            )
        else:
            context = multiprocessing.get_context("spawn")
            self._worker = context.Process(target=serve_fake, args=(child, users), daemon=True)
        self._worker.start()
        self.base_url, self.fleet = self._conn.recv()

    @property
    def pid(self) -> int | None:
        """The fake's process id (None when it runs in a thread)."""
        return getattr(self._worker, "pid", None)

    def ask(self, command: str, argument: Any = None) -> Any:
        self._conn.send((command, argument))
        return self._conn.recv()

    def stop(self) -> None:
        self.ask("stop")
        self._worker.join(timeout=10)


def timed_run(
    settings: Settings, db: Any, fake: FakeProcess, users: int, workers: int
) -> tuple[float, float]:
    """Make every pair due, run them at this concurrency; seconds and requests per sync."""
    with transaction(db) as conn:
        conn.execute(
            "UPDATE sync_schedule SET next_sync_at = ?", [to_iso(utcnow() - timedelta(minutes=1))]
        )
    before = fake.ask("count")
    started = time.perf_counter()
    with orchestrator(settings.with_overrides(concurrency=workers)) as runner:
        summary = fleet.run_due(runner)
    elapsed = time.perf_counter() - started
    if summary is None or summary.failed or len(summary.attempts) != users:
        raise SystemExit(f"run-due at concurrency {workers} did not sync every pair")
    return elapsed, (fake.ask("count") - before) / users


def bench_throughput(
    users: int, latency: float, concurrencies: list[int], *, in_thread: bool, repeat: int
) -> list[tuple[int, int, float, float, float, float]]:
    fake = FakeProcess(users, in_thread=in_thread)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db_path = Path(tmp) / "sync.db"
            settings = load_settings(
                db=db_path, env={"SYNCCTL_GOOGLE_ENDPOINT": fake.base_url}, concurrency=8
            )
            db = open_database(db_path)
            grants = [
                UserGrant(user_id, parse_credentials(creds), None, (Integration.CALENDAR,))
                for user_id, creds in fake.fleet.items()
            ]
            save_grants(db, settings, grants, now=utcnow())
            with orchestrator(settings) as runner:
                first = fleet.run_due(runner)  # full syncs, without latency
            if first is None or first.failed:
                raise SystemExit("the first full run failed")
            fake.ask("latency", latency)
            for workers in concurrencies:
                runs = [
                    timed_run(settings, db, fake, users, workers)
                    for _ in range(1 if workers == 1 else repeat)
                ]
                elapsed, per_sync = sorted(runs)[len(runs) // 2]  # the median run
                rate = users / elapsed
                bound = workers / (per_sync * latency)
                results.append((workers, users, elapsed, per_sync, rate, 100 * rate / bound))
            db.close()
    finally:
        fake.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--sync-users", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--repeat", type=int, default=3, help="runs per concurrency above 1")
    parser.add_argument("--fake-in-thread", action="store_true")
    parser.add_argument("--skip-planning", action="store_true")
    args = parser.parse_args()

    if not args.skip_planning:
        title = f"planning ({args.users:,} users, 2 pairs each)"
        print(f"{title:<44} {'seconds':>8}")
        for label, seconds in bench_planning(args.users, args.due):
            print(f"{label:<44} {seconds:>8.3f}")
        print()
    where = "thread of the benchmark process" if args.fake_in_thread else "separate process"
    print(
        f"throughput: {args.sync_users} calendar-only users, incremental syncs, "
        f"{args.latency * 1000:.0f} ms latency per request, fake Google in a {where}"
    )
    print(
        f"{'concurrency':>11} {'syncs':>6} {'seconds':>8} {'req/sync':>9} {'syncs/s':>8}"
        f" {'bound/s':>8} {'% bound':>8}"
    )
    rows = bench_throughput(
        args.sync_users,
        args.latency,
        args.concurrency,
        in_thread=args.fake_in_thread,
        repeat=args.repeat,
    )
    for workers, syncs, elapsed, per_sync, rate, percent in rows:
        bound = workers / (per_sync * args.latency)
        print(
            f"{workers:>11} {syncs:>6} {elapsed:>8.2f} {per_sync:>9.2f} {rate:>8.1f}"
            f" {bound:>8.1f} {percent:>7.0f}%"
        )


if __name__ == "__main__":
    main()
