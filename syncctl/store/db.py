"""Open, create and migrate the syncctl SQLite database; refuse files that are not ours."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from syncctl.store.schema import MIGRATIONS, SCHEMA_VERSION

APPLICATION_ID = 0x53594E43  # "SYNC": marks a file as a syncctl database
BUSY_TIMEOUT_MS = 30_000


class DatabaseError(Exception):
    """The database file cannot be used (not ours, unreadable, or from a newer syncctl)."""


def open_database(path: Path | str) -> sqlite_utils.Database:
    """Open (creating with mode 0600 if needed) and migrate the database at path."""
    path = Path(path)
    if str(path) != ":memory:":
        _create_private_file(path)
        _refuse_foreign_file(path)
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(f"{path}: cannot open the database ({exc})") from exc
    # isolation_level=None lets us issue explicit BEGIN IMMEDIATE in transaction().
    return sqlite_utils.Database(conn)


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """One all-or-nothing unit of writes: BEGIN IMMEDIATE ... COMMIT, rolled back on error."""
    if db.conn.in_transaction:
        with db.atomic():  # nested: a savepoint inside the outer unit
            yield db.conn
        return
    with _immediate(db.conn) as conn:
        yield conn


def _create_private_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _refuse_foreign_file(path: Path) -> None:
    """Inspect read-only so that a file that is not ours is left byte-for-byte untouched."""
    if path.stat().st_size == 0:
        return
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot read the database file ({exc.strerror})") from exc
    if header != b"SQLite format 3\x00":
        raise DatabaseError(f"{path} is not a syncctl database (not SQLite); left untouched")
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            application_id = probe.execute("PRAGMA application_id").fetchone()[0]
            table_count = probe.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            version = probe.execute("PRAGMA user_version").fetchone()[0]
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path} is not a readable SQLite database; left untouched") from exc
    if application_id != APPLICATION_ID and table_count > 0:
        raise DatabaseError(f"{path} is an SQLite database but not a syncctl one; left untouched")
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} has schema version {version}, newer than this syncctl ({SCHEMA_VERSION});"
            " upgrade syncctl"
        )


def _migrate(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    with _immediate(conn):
        # Re-read under the write lock: a concurrent process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for script in MIGRATIONS[version:]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _statements(script: str) -> Iterator[str]:
    """Split a script into whole statements (trigger bodies contain semicolons)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending[:60]!r}")


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(db: sqlite_utils.Database) -> int:
    """The schema version stored in the database."""
    return db.conn.execute("PRAGMA user_version").fetchone()[0]
