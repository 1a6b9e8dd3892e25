"""Time `syncctl user import` of 100,000 JSON Lines users (first import and idempotent re-run).

Run: python benchmarks/bench_user_import.py [N]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_users(path: Path, count: int) -> None:
    with path.open("w") as handle:
        for index in range(count):
            record = {
                "id": f"user-{index:06d}",
                "email": f"user{index}@example.test",
                "integrations": ["contacts", "calendar"] if index % 3 else ["calendar"],
                "credentials": {
                    "type": "authorized_user",
                    "client_id": "bench-client.apps.example",
                    "client_secret": "bench-secret",
                    "refresh_token": f"bench-refresh-{index}",
                },
            }
            handle.write(json.dumps(record) + "\n")


def timed_import(db: Path, path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "syncctl", "--db", str(db), "user", "import", str(path)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "users.jsonl"
        db = Path(tmp) / "bench.db"
        write_users(users, count)
        first = timed_import(db, users)
        again = timed_import(db, users)
    print(f"{'user import':<28} {'users':>8} {'seconds':>8} {'users/s':>9}")
    print(f"{'first import':<28} {count:>8} {first:>8.2f} {count / first:>9.0f}")
    print(f"{'re-import (idempotent)':<28} {count:>8} {again:>8.2f} {count / again:>9.0f}")


if __name__ == "__main__":
    main()
