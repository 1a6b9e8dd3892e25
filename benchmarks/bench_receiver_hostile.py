"""Hostile traffic against `syncctl webhook serve` on loopback; prints figures.

Run: python benchmarks/bench_receiver_hostile.py [--stalled 100] [--requests 20]
     [--big 300] [--header-kb 60] [--burst 300] [--drops 200]

The receiver runs as its own process (the installed command), in front of an in-process fake
Google with one calendar user whose watch channel points at it. Every loop is bounded and
every socket is on 127.0.0.1.

1. Latency of a valid notification (p50 / p95 / max of --requests) with no other traffic,
   then while --stalled connections each hold half a request open (nothing more is sent).
2. Memory: the receiver's RSS before, at its peak (VmHWM) and after --big concurrent requests
   with --header-kb KB of headers each, and the statuses they got.
3. A burst of --burst concurrent valid POSTs: how many were answered (a small backlog drops
   connections), and how many Google calls the coalesced syncs made.
4. --drops clients that hang up mid-request (RST): log lines written, and how many hold a
   traceback (must be 0).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.fernet import Fernet

from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.model import Integration, Trigger
from syncctl.orchestrator import Orchestrator
from syncctl.store import channels as channel_store
from syncctl.store import open_database
from syncctl.users import add_user, parse_credentials

USER = "bench"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def post(port: int, headers: dict[str, str], timeout: float = 10) -> int | str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/calendar-push", body=b"", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError as exc:
        return type(exc).__name__
    finally:
        conn.close()


def timed_posts(port: int, headers: dict[str, str], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        status = post(port, headers)
        times.append(time.perf_counter() - started)
        assert status == 200, status
    return times


def describe(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return (
        f"p50 {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms,"
        f" max {ordered[-1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stalled", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--big", type=int, default=300)
    parser.add_argument("--header-kb", type=int, default=60)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--drops", type=int, default=200)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="syncctl-hostile-"))
    # A throwaway key and config home: the benchmark never touches the operator's key file.
    os.environ["SYNCCTL_SECRET_KEY"] = Fernet.generate_key().decode()
    os.environ["XDG_CONFIG_HOME"] = str(work / "xdg")
    db_path = work / "syncctl.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}/calendar-push"
    with FakeGoogle() as fake:
        settings = Settings(db_path=db_path, google_endpoint=fake.base_url, webhook_url=url)
        info = fake.add_user(USER, calendars=1, events_per_calendar=5)
        db = open_database(db_path)
        add_user(
            db,
            settings,
            USER,
            parse_credentials(info),
            integrations=(Integration.CALENDAR,),
            now=utcnow(),
        )
        db.close()
        runner = Orchestrator(settings)
        runner.attempt(USER, Integration.CALENDAR, Trigger.MANUAL)  # opens the watch channel
        runner.close()
        fake.flush_notifications()
        db = open_database(db_path)
        channel = channel_store.open_channels(db.conn, USER)[0]
        db.close()
        valid = {
            "X-Goog-Channel-ID": channel.channel_id,
            "X-Goog-Channel-Token": channel.token,
            "X-Goog-Resource-State": "exists",
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Message-Number": "2",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCCTL_")}
        env["SYNCCTL_SECRET_KEY"] = os.environ["SYNCCTL_SECRET_KEY"]
        env |= {
            "SYNCCTL_GOOGLE_ENDPOINT": fake.base_url,
            "SYNCCTL_WEBHOOK_URL": url,
            "XDG_CONFIG_HOME": str(work / "xdg"),
        }
        log_path = work / "receiver.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "syncctl", "--db", str(db_path), "webhook", "serve"]
                + ["--port", str(port)],
                stderr=log,
                env=env,
            )
        try:
            for _ in range(200):  # bounded wait for the listening socket
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            rss = rss_kb(process.pid) / 1024
            print(f"receiver pid {process.pid} on 127.0.0.1:{port}; RSS {rss:.1f} MB")

            quiet = timed_posts(port, valid, args.requests)
            print(f"1. valid notification, no other traffic ({args.requests}): {describe(quiet)}")
            held = []
            for _ in range(args.stalled):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"POST /calendar-push HTTP/1.1\r\nHost: x\r\nX-Goog-Channel-ID: ")
                held.append(sock)
            time.sleep(0.2)
            loaded = timed_posts(port, valid, args.requests)
            print(
                f"   with {args.stalled} stalled connections held: {describe(loaded)};"
                f" RSS {rss_kb(process.pid) / 1024:.1f} MB"
            )
            for sock in held:
                sock.close()

            before = rss_kb(process.pid)
            pad = {"X-Pad": "p" * (args.header_kb * 1024)}
            with ThreadPoolExecutor(max_workers=args.big) as pool:
                statuses = list(pool.map(lambda _: post(port, valid | pad), range(args.big)))
            time.sleep(0.5)
            counts: dict[str, int] = {}
            for status in statuses:
                counts[str(status)] = counts.get(str(status), 0) + 1
            print(
                f"2. {args.big} concurrent requests with {args.header_kb} KB headers: statuses"
                f" {counts}; RSS before {before / 1024:.1f} MB, peak"
                f" {rss_kb(process.pid, 'VmHWM') / 1024:.1f} MB, after"
                f" {rss_kb(process.pid) / 1024:.1f} MB"
            )

            fake.reset_counts()
            with ThreadPoolExecutor(max_workers=args.burst) as pool:
                statuses = list(pool.map(lambda _: post(port, valid), range(args.burst)))
            answered = sum(1 for s in statuses if s == 200)
            time.sleep(4)  # the coalescing window (2 s) and the sync
            print(
                f"3. burst of {args.burst} concurrent valid POSTs: {answered} answered 200,"
                f" {args.burst - answered} not; Google calls of the coalesced syncs:"
                f" {fake.request_count()} ({fake.request_count(USER, 'calendar.events.list')}"
                " events.list)"
            )

            lines_before = len(log_path.read_text().splitlines())
            for _ in range(args.drops):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(
                    b"POST /calendar-push HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\nab"
                )
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                sock.close()
            time.sleep(0.5)
            text = log_path.read_text()
            new_lines = text.splitlines()[lines_before:]
            print(
                f"4. {args.drops} clients hung up mid-request: {len(new_lines)} log lines,"
                f" {text.count('Traceback')} tracebacks in the whole log;"
                f" RSS {rss_kb(process.pid) / 1024:.1f} MB"
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    threading.Event().wait(0)


if __name__ == "__main__":
    main()
