"""Full-sync 25,000 contacts (the People API per-account maximum) from the fake Google.

The fake Google runs in a SUBPROCESS, so the peak RSS printed is the syncer's alone (this
process: imports, the google client, one page in flight, SQLite). Phases: the first full sync,
an incremental sync with nothing new, 250 changes then an incremental sync, and a forced full
resync over the existing mirror. "storage" is the time spent inside the engine's page
transactions (upsert, sweep, token, COMMIT); the rest is HTTP, JSON and the client library.
Targets: peak RSS under 150 MB, the first full sync of 25,000 contacts under 20 s (the bound
tests/test_fakegoogle.py once asserted; a figure, so it lives here), and storage a small share
of the wall time.

Usage: python benchmarks/bench_contacts_sync.py [--contacts 25000] [--db PATH] [--latency 0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncctl.clock import utcnow  # noqa: E402
from syncctl.config import Settings  # noqa: E402
from syncctl.engines import SyncOutcome, _scope  # noqa: E402
from syncctl.engines.contacts import sync_contacts  # noqa: E402
from syncctl.google import GoogleSession  # noqa: E402
from syncctl.model import UserCredentials  # noqa: E402
from syncctl.store import open_database  # noqa: E402

USER = "bench"
RSS_TARGET_MB = 150.0
FULL_SYNC_TARGET_S = 20.0
# The fake Google's process: build the account, print its address and grant, serve until
# stdin closes; on "changes N" apply N random changes and answer "ok".
FAKE = """
import json, sys
from syncctl.fakegoogle import FakeGoogle
fake = FakeGoogle(seed=7)
fake.start()
info = fake.add_user(sys.argv[1], contacts=int(sys.argv[2]), groups=8)
fake.set_latency(float(sys.argv[3]))
print(json.dumps({"base_url": fake.base_url, "credentials": info}), flush=True)
for line in sys.stdin:
    command, _, count = line.partition(" ")
    if command == "changes":
        fake.set_latency(0)
        fake.random_changes(sys.argv[1], int(count))
        fake.set_latency(float(sys.argv[3]))
    print("ok", flush=True)
fake.stop()
"""


@dataclass
class StorageTimer:
    """Wall time spent inside the engine's page transactions."""

    seconds: float = 0.0

    def wrap(self, transaction: Callable[..., Any]) -> Callable[..., Any]:
        @contextmanager
        def timed(db: Any) -> Iterator[Any]:
            began = time.perf_counter()
            try:
                with transaction(db) as conn:
                    yield conn
            finally:
                self.seconds += time.perf_counter() - began

        return timed


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def current_rss_mb() -> float:
    """This process's resident set size now, from /proc (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    """Run the phases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=25_000)
    parser.add_argument("--db", type=Path, default=None, help="database path (default: temp)")
    parser.add_argument("--latency", type=float, default=0.0, help="fake latency per request")
    args = parser.parse_args()

    print(f"starting the fake Google (subprocess) with {args.contacts:,} contacts ...", flush=True)
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE, USER, str(args.contacts), str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdin is not None and fake.stdout is not None
    hello = json.loads(fake.stdout.readline())
    info = hello["credentials"]
    credentials = UserCredentials(
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        refresh_token=info["refresh_token"],
        scopes=tuple(info["scopes"]),
    )
    settings = Settings(google_endpoint=hello["base_url"])
    storage = StorageTimer()
    _scope.transaction = storage.wrap(_scope.transaction)  # type: ignore[assignment]

    with tempfile.TemporaryDirectory() as scratch:
        db_path = args.db or Path(scratch) / "bench.db"
        db = open_database(db_path)
        baseline = current_rss_mb()
        rows: list[tuple[Any, ...]] = []

        def phase(name: str, *, full: bool) -> tuple[SyncOutcome, float]:
            storage.seconds = 0.0
            began = time.perf_counter()
            with GoogleSession(credentials, settings, now=utcnow) as session:
                outcome = sync_contacts(db, session, USER, full=full, now=utcnow)
            wall = time.perf_counter() - began
            rate = outcome.items_processed / wall if wall else 0.0
            rows.append(
                (
                    name,
                    outcome.sync_type.value,
                    f"{wall:.2f}",
                    f"{outcome.items_processed:,}",
                    f"{rate:,.0f}",
                    f"{outcome.added}/{outcome.updated}/{outcome.deleted}",
                    f"{storage.seconds:.2f} ({100 * storage.seconds / wall:.0f}%)",
                    str(outcome.api_calls_made),
                    f"{peak_rss_mb():.1f}",
                )
            )
            return outcome, wall

        first_sync, first_wall = phase("full sync", full=False)
        phase("incremental, no change", full=False)
        fake.stdin.write("changes 250\n")
        fake.stdin.flush()
        fake.stdout.readline()
        phase("incremental, 250 changes", full=False)
        phase("forced full resync", full=True)
        stored = db.conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
        db.close()
    fake.stdin.close()
    fake.wait(timeout=30)

    headers = (
        "phase",
        "type",
        "wall s",
        "items",
        "items/s",
        "add/upd/del",
        "storage s",
        "calls",
        "peak RSS MB",
    )
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    peak = peak_rss_mb()
    verdict = "OK" if peak < RSS_TARGET_MB else "OVER TARGET"
    print(
        f"\ncontacts stored: {stored:,}; RSS after imports {baseline:.1f} MB;"
        f" peak RSS {peak:.1f} MB (target < {RSS_TARGET_MB:.0f} MB: {verdict})"
    )
    in_time = "OK" if first_wall < FULL_SYNC_TARGET_S else "OVER TARGET"
    print(
        f"first full sync: {first_sync.items_processed:,} contacts in"
        f" {first_sync.api_calls_made} calls, {first_wall:.2f} s"
        f" (target < {FULL_SYNC_TARGET_S:.0f} s: {in_time})"
    )


if __name__ == "__main__":
    main()
