"""One `run-due` per database: an OS file lock that dies with its holder."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from syncctl.store import DatabaseError


@contextmanager
def run_due_lock(db_path: Path) -> Iterator[bool]:
    """Yield True while holding the database's run-due lock, False if another process holds it.

    flock is released by the kernel when the holder exits, so a crashed run never blocks later
    ones.
    """
    # Resolved, so a database reached through a symlink or a relative path shares one lock.
    lock_path = Path(f"{Path(db_path).resolve()}.run-due.lock")
    # Beside an existing database only (the caller opened it first): no directories are made.
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise DatabaseError(f"cannot create the run-due lock {lock_path} ({exc.strerror})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
