"""How long `syncctl report` takes over a year of metrics for 10,000 users (target: under 2 s).

Generates the database once with benchmarks/metrics_gen.py (kept at --db for later runs), then
times build_report for several windows, the renderings, and the command line end to end, and
prints the query plans so an unindexed scan shows up.

Usage: python benchmarks/bench_report.py [--db /tmp/syncctl-bench-report.db] [--users 10000]
       [--days 365] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import metrics_gen  # noqa: E402

from syncctl.clock import to_iso  # noqa: E402
from syncctl.report import build_report  # noqa: E402
from syncctl.report_render import page, prometheus, sections  # noqa: E402
from syncctl.store import open_database  # noqa: E402
from syncctl.store import report_queries as q  # noqa: E402
from syncctl.store.metrics import RECENT_ATTEMPTS as RECENT_SYNCS  # noqa: E402
from syncctl.store.schema import ROLLUP_MIGRATION  # noqa: E402

END = datetime.fromisoformat("2026-06-30T12:00:00+00:00")
TARGET_SECONDS = 2.0
# The command line as cron runs it, but at the generated data's end (the data does not move
# with the real clock); freezegun's own import is about 0.05 s of the measured time.
CLI_AT_END = (
    "from freezegun import freeze_time\n"
    "from syncctl.cli import main\n"
    f"with freeze_time('{END.isoformat()}'):\n"
    "    main()\n"
)
DEFAULT_DB = Path(os.environ.get("TMPDIR", "/tmp")) / "syncctl-bench-report.db"  # noqa: S108


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (contention-proof, unlike wall)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float, float, float]:
    """(first, median, max) wall seconds and median CPU seconds of `repeat` runs."""
    runs, cpu = [], []
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), _cpu_seconds()
        action()
        runs.append(time.perf_counter() - began)
        cpu.append(_cpu_seconds() - began_cpu)
    return runs[0], statistics.median(runs), max(runs), statistics.median(cpu)


def prepare(path: Path, users: int, days: int) -> None:
    params = path.with_suffix(".params.json")
    wanted = {"users": users, "days": days, "end": to_iso(END), "generator": 1}
    if path.exists() and params.exists() and json.loads(params.read_text()) == wanted:
        db = open_database(path)
        if not q.has_rollup(db.conn):
            began = time.perf_counter()
            db.conn.executescript(ROLLUP_MIGRATION)
            print(f"rollup migration (backfill) of {path}: {time.perf_counter() - began:.1f} s")
        db.close()
        return
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), params):
        stale.unlink(missing_ok=True)
    print(f"generating {users:,} users x {days} days into {path} ...", flush=True)
    began = time.perf_counter()
    rows = metrics_gen.generate(path, users=users, days=days, end=END)
    print(f"  {rows:,} sync_metrics rows in {time.perf_counter() - began:.0f} s", flush=True)
    params.write_text(json.dumps(wanted))


def query_plans(db, user_id: str) -> list[tuple[str, str]]:
    """EXPLAIN QUERY PLAN of every statement the report runs (fleet and one user), in order."""
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    build_report(db, now=END + timedelta(days=3), since=timedelta(days=7))
    build_report(db, now=END, since=timedelta(days=7), user_id=user_id)
    db.conn.set_trace_callback(None)
    plans = []
    for sql in dict.fromkeys(s for s in statements if s.lstrip().upper().startswith("SELECT")):
        rows = db.conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
        head = " ".join(sql.split())[:70]
        plans.append((head, "; ".join(row[-1] for row in rows)))
    return plans


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    prepare(args.db, args.users, args.days)
    db = open_database(args.db)
    rows = db.conn.execute("SELECT count(*) FROM sync_metrics").fetchone()[0]
    size = args.db.stat().st_size / 2**30
    revoked = q.revoked_pairs(db.conn, None)[0][0]
    normal = "user00001"
    report = build_report(db, now=END, since=timedelta(days=7))

    cases: list[tuple[str, Callable[[], object]]] = [
        ("report --since 7d (fleet)", lambda: build_report(db, now=END, since=timedelta(days=7))),
        ("report --since 24h", lambda: build_report(db, now=END, since=timedelta(hours=24))),
        ("report --since 30d", lambda: build_report(db, now=END, since=timedelta(days=30))),
        ("report --since 365d", lambda: build_report(db, now=END, since=timedelta(days=365))),
        (f"report --user {normal}",
         lambda: build_report(db, now=END, since=timedelta(days=7), user_id=normal)),
        (f"report --user {revoked} (revoked)",
         lambda: build_report(db, now=END, since=timedelta(days=7), user_id=revoked)),
        ("report 7d, cron stopped 3 days (all due)",
         lambda: build_report(db, now=END + timedelta(days=3), since=timedelta(days=7))),
        ("render JSON", lambda: json.dumps(report, indent=2)),
        ("render Prometheus", lambda: prometheus.render_prometheus(report)),
        ("render HTML", lambda: page.render_html(report)),
        ("render table sections", lambda: sections.sections(report)),
    ]  # fmt: skip
    results = [(name, *timed(action, args.repeat)) for name, action in cases]
    db.close()

    env = dict(os.environ, SYNCCTL_DB=str(args.db), SYNCCTL_CONFIG=os.devnull, COLUMNS="120")
    for label, extra in (
        ("CLI: syncctl report --json", ["--json"]),
        ("CLI: syncctl report (tables)", []),
        ("CLI: syncctl report --format prometheus", ["--format", "prometheus"]),
        ("CLI: syncctl report --html FILE", ["--html", str(args.db.with_suffix(".html"))]),
    ):
        command = [sys.executable, "-c", CLI_AT_END, "report", *extra]

        def run(command=command) -> None:
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)

        results.append((label, *timed(run, max(2, args.repeat // 2))))

    print(f"\n{rows:,} sync_metrics rows, {args.users:,} users, {args.days} days,"
          f" {size:.2f} GiB; {args.repeat} runs each (CLI: fewer), page cache warm\n")  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(f"| {'what':<46} | first s | median s | max s | median CPU s |")
    print(f"|{'-' * 48}|---------|----------|-------|--------------|")
    for name, first, median, worst, cpu in results:
        print(f"| {name:<46} | {first:7.3f} | {median:8.3f} | {worst:5.3f} | {cpu:12.3f} |")
    print("\nQuery plans (sqlite EXPLAIN QUERY PLAN):")
    db = open_database(args.db)
    for sql, plan in query_plans(db, revoked):
        print(f"  {sql}...\n      {plan}")
    db.close()
    print(f"\nper-pair mean over the last {RECENT_SYNCS} successes for due pairs (correlated).")
    fleet = results[0]
    cli_json = next(r for r in results if r[0].startswith("CLI: syncctl report --json"))
    verdict = "PASS" if max(fleet[2], cli_json[2]) < TARGET_SECONDS else "FAIL"
    print(
        f"{verdict}: report over the year: {fleet[2]:.3f} s in-process ({fleet[4]:.3f} s CPU),"
        f" {cli_json[2]:.3f} s CLI ({cli_json[4]:.3f} s CPU); target < {TARGET_SECONDS} s wall"
    )
    if verdict == "FAIL":
        sys.exit(1)


if __name__ == "__main__":
    main()
