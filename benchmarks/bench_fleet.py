"""Sustained Google requests per second of one host: run-due over thousands of syncs.

Run: python benchmarks/bench_fleet.py [--users 12000] [--seconds 30] [--latency 0.1]
     [--concurrency 16 32 64 96 128] [--cores 2] [--layouts shared split] [--profile 300]

The fake Google runs in its own process (spawned) with `--users` calendar-only users of one
calendar and 5 events each. Both processes run on the first `--cores` CPUs, laid out two ways
in turn: `shared`, both processes on every one of them (the scheduler moves syncctl's threads
and the fake's across the cores), and `split`, syncctl on the first half and the fake on the
other (as a host whose Google is elsewhere keeps its cores to itself). A first
run-due at concurrency 64 and no latency does every user's full sync (not timed), and a second
one over a few hundred pairs measures the requests an incremental sync sends (one since the
calendar list has its own 24 h cadence: events.list of the one calendar). Then the fake answers
every request after `--latency` seconds and, for each concurrency K, rounds of `fleet.run_due`
at concurrency K run until `--seconds` have passed: each round makes the first pairs due
(sized to last the time still wanted at the rate measured so far, the latency bound
`K / (requests per sync x latency)` for the first; at most --users) and runs them, incremental
syncs with tokens fresh and the quota budget on (raised to 1,000,000 a minute so it is spent
from, not waited on). Each round starts cold as a cron-started run-due does: no secret opened
yet, new threads; the collector is tuned as the `run-due` command tunes it
(fleet.tune_collector).

Printed per layout and K, summed over its rounds: rounds, syncs, seconds, Google requests and
requests/s (counted by the fake), syncs/s, and where the time went: syncctl CPU per request
and per sync (this process's CPU time over the rounds, run-due's own listing included), the
SQLite write time per request (wall time threads spent waiting for and holding the write lock,
summed over threads), the fake's CPU per request (its own process CPU time), and the host's
1-minute load average after the rounds (other processes on the same cores lower every figure).

--profile N profiles N sequential scheduled attempts on the main thread with no latency
(pyinstrument, `pip install pyinstrument`: wall time) and prints the call tree; --cpu-profile N
does the same with cProfile timed by this process's CPU clock (where syncctl's CPU per request
goes).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench_run_due import FakeProcess  # the fake Google's process, shared with bench_run_due

from syncctl import fleet
from syncctl.clock import to_iso, utcnow
from syncctl.config import Settings, load_settings
from syncctl.model import Integration, Trigger
from syncctl.orchestrator import Orchestrator
from syncctl.secrets import forget_keys
from syncctl.store import db as store_db
from syncctl.store import open_database, transaction
from syncctl.store.users import UserGrant
from syncctl.users import parse_credentials, save_grants

WARM_UP_SYNCS = 500  # incremental syncs that measure the requests each one sends


class WriteTimer:
    """Wall time threads spend waiting for SQLite's write lock and holding it (all threads)."""

    def __init__(self) -> None:
        self.wait = 0.0
        self.held = 0.0
        self.count = 0
        self._lock = threading.Lock()
        self._original = store_db._immediate

    @contextmanager
    def _timed(self, conn: Any) -> Iterator[Any]:
        asked = time.perf_counter()
        with self._original(conn) as tx:
            got = time.perf_counter()
            try:
                yield tx
            finally:
                done = time.perf_counter()
                with self._lock:
                    self.wait += got - asked
                    self.held += done - got
                    self.count += 1

    def install(self) -> None:
        store_db._immediate = self._timed  # benchmark instrumentation only

    def reset(self) -> tuple[float, float, int]:
        with self._lock:
            figures = (self.wait, self.held, self.count)
            self.wait = self.held = 0.0
            self.count = 0
        return figures


def pin(pid: int | str, cpus: set[int]) -> None:
    """Every thread of process `pid` ("self": this one) onto `cpus` (threads started later
    inherit it from their creator)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:
            continue  # a thread that ended meanwhile


def layout_cpus(layout: str, cpus: list[int]) -> tuple[set[int], set[int]]:
    """(syncctl's CPUs, the fake's): all of them shared, or split in two halves, as a host
    whose Google is elsewhere keeps its cores to itself."""
    if layout == "shared" or len(cpus) < 2:
        return set(cpus), set(cpus)
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def make_due(db: Any, count: int) -> None:
    past = to_iso(utcnow() - timedelta(minutes=1))
    with transaction(db) as conn:
        conn.execute("UPDATE sync_schedule SET next_sync_at = ?", [to_iso(utcnow() + timedelta(1))])
        conn.execute(
            "UPDATE sync_schedule SET next_sync_at = ? WHERE rowid IN"
            " (SELECT rowid FROM sync_schedule ORDER BY user_id LIMIT ?)",
            [past, count],
        )


def run_round(
    settings: Settings, db: Any, fake: FakeProcess, timer: WriteTimer, syncs: int, workers: int
) -> dict[str, float]:
    """One run-due at concurrency `workers` over the first `syncs` pairs, made due first."""
    make_due(db, syncs)
    forget_keys()  # each round opens its users' secrets again, as a cron-started run-due does
    requests_before, fake_cpu_before = fake.ask("count"), fake.ask("cpu")
    timer.reset()
    cpu_before, started = time.process_time(), time.perf_counter()
    runner = Orchestrator(settings.with_overrides(concurrency=workers))
    try:
        summary = fleet.run_due(runner)
    finally:
        runner.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    wait, held, _ = timer.reset()
    if summary is None or summary.failed or len(summary.attempts) != syncs:
        raise SystemExit(f"run-due at concurrency {workers} did not sync every pair")
    return {
        "rounds": 1,
        "syncs": syncs,
        "seconds": elapsed,
        "requests": fake.ask("count") - requests_before,
        "cpu": cpu,
        "wait": wait,
        "held": held,
        "fake_cpu": fake.ask("cpu") - fake_cpu_before,
    }


def run_at(
    settings: Settings,
    db: Any,
    fake: FakeProcess,
    timer: WriteTimer,
    *,
    workers: int,
    users: int,
    seconds: float,
    first_syncs: int,
) -> dict[str, float]:
    """Rounds of run-due at concurrency `workers` until `seconds` have passed, summed."""
    total: dict[str, float] = {}
    syncs = min(users, first_syncs)
    while True:
        row = run_round(settings, db, fake, timer, syncs, workers)
        total = {key: total.get(key, 0) + value for key, value in row.items()}
        left = seconds - total["seconds"]
        if left <= 0:
            break
        rate = total["syncs"] / total["seconds"]
        syncs = min(users, max(workers * 4, math.ceil(rate * left * 1.05)))
    requests, elapsed = total["requests"], total["seconds"]
    return {
        **total,
        "rate": requests / elapsed,
        "sync_rate": total["syncs"] / elapsed,
        "cpu_ms": 1000 * total["cpu"] / requests,
        "cpu_sync_ms": 1000 * total["cpu"] / total["syncs"],
        "write_wait_ms": 1000 * total["wait"] / requests,
        "write_held_ms": 1000 * total["held"] / requests,
        "held_share": 100 * total["held"] / elapsed,
        "fake_cpu_ms": 1000 * total["fake_cpu"] / requests,
    }


def requests_per_sync(
    settings: Settings, db: Any, fake: FakeProcess, timer: WriteTimer, syncs: int
) -> float:
    """The Google requests one incremental sync sends, measured (no latency)."""
    row = run_round(settings, db, fake, timer, syncs, 16)
    return row["requests"] / row["syncs"]


def profile_attempts(runner: Orchestrator, user_ids: list[str], *, cpu: bool) -> None:
    """pyinstrument's wall-time tree, or (cpu) cProfile timed by this process's CPU clock."""
    if cpu:
        import cProfile
        import pstats

        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for user_id in user_ids:
            runner.attempt(user_id, Integration.CALENDAR, Trigger.SCHEDULED)
        profile.disable()
        stats = pstats.Stats(profile)
        print(f"CPU profile of {len(user_ids)} sequential attempts (cProfile, process time)")
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    for user_id in user_ids:
        runner.attempt(user_id, Integration.CALENDAR, Trigger.SCHEDULED)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=12_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 32, 64, 96, 128])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--layouts", nargs="+", choices=["shared", "split"], default=["shared", "split"]
    )
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--cpu-profile", type=int, default=0, metavar="N")
    args = parser.parse_args()

    fleet.tune_collector()  # as the run-due command does
    cpus = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cpus)  # the spawned fake inherits it
    print(f"fake Google: its own process; {args.users:,} calendar users; cpus {cpus}", flush=True)
    started = time.perf_counter()
    fake = FakeProcess(args.users, in_thread=False)
    timer = WriteTimer()
    timer.install()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db_path = Path(tmp) / "fleet.db"
            settings = load_settings(
                db=db_path,
                env={"SYNCCTL_GOOGLE_ENDPOINT": fake.base_url},
                quota_calendar_per_minute=1_000_000,
                quota_people_per_minute=1_000_000,
            )
            db = open_database(db_path)
            grants = [
                UserGrant(user_id, parse_credentials(creds), None, (Integration.CALENDAR,))
                for user_id, creds in fake.fleet.items()
            ]
            save_grants(db, settings, grants, now=utcnow())
            runner = Orchestrator(settings.with_overrides(concurrency=64))
            first = fleet.run_due(runner)
            if first is None or first.failed:
                raise SystemExit("the first full run failed")
            print(f"set-up (seed, import, full syncs): {time.perf_counter() - started:.0f} s")
            if args.profile or args.cpu_profile:
                count = args.profile or args.cpu_profile
                profile_attempts(runner, list(fake.fleet)[:count], cpu=bool(args.cpu_profile))
            per_sync = requests_per_sync(settings, db, fake, timer, min(args.users, WARM_UP_SYNCS))
            fake.ask("latency", args.latency)
            print(
                f"\n{args.latency * 1000:.0f} ms latency; incremental calendar syncs"
                f" ({per_sync:.2f} requests each, measured); rounds of run-due until"
                f" {args.seconds:.0f} s have passed"
            )
            header = (
                f"{'cpus':>6} {'K':>4} {'rounds':>6} {'syncs':>7} {'seconds':>7} {'requests':>9}"
                f" {'req/s':>6} {'bound':>5} {'syncs/s':>7} {'cpu ms/req':>10} {'ms/sync':>7}"
                f" {'sqlite wait':>11} {'sqlite held':>11} {'fake cpu':>8} {'load':>5}"
            )
            print(header + "\n" + " " * 91 + "(ms/req)    (ms/req, % wall) (ms/req)")
            for layout, workers in itertools.product(args.layouts, args.concurrency):
                ours, theirs = layout_cpus(layout, cpus)
                pin("self", ours)
                pin(fake.pid, theirs)
                bound = workers / args.latency / per_sync
                row = run_at(
                    settings,
                    db,
                    fake,
                    timer,
                    workers=workers,
                    users=args.users,
                    seconds=args.seconds,
                    first_syncs=math.ceil(bound * args.seconds),
                )
                print(
                    f"{layout:>6} {workers:>4} {row['rounds']:>6.0f} {row['syncs']:>7,.0f}"
                    f" {row['seconds']:>7.1f} {row['requests']:>9,.0f} {row['rate']:>6.0f}"
                    f" {bound * per_sync:>5.0f} {row['sync_rate']:>7.0f} {row['cpu_ms']:>10.3f}"
                    f" {row['cpu_sync_ms']:>7.3f} {row['write_wait_ms']:>11.3f}"
                    f" {row['write_held_ms']:>6.3f} {row['held_share']:>3.0f}%"
                    f" {row['fake_cpu_ms']:>8.3f} {os.getloadavg()[0]:>5.1f}",
                    flush=True,
                )
            runner.close()
            db.close()
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
