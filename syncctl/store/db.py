"""Open, create and migrate the syncctl SQLite database; refuse files that are not ours."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from syncctl.store.report_queries import ROLLUP_MIGRATION

APPLICATION_ID = 0x53594E43  # "SYNC": marks a file as a syncctl database
BUSY_TIMEOUT_MS = 30_000


class DatabaseError(Exception):
    """The database file cannot be used (not ours, unreadable, or from a newer syncctl)."""


SCHEMA_V1 = """
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            email TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE user_integrations (
            user_id TEXT NOT NULL REFERENCES users(id),
            integration_type TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (user_id, integration_type)
        );
        CREATE TABLE credentials (
            user_id TEXT PRIMARY KEY REFERENCES users(id),
            client_id TEXT NOT NULL,
            client_secret TEXT NOT NULL,
            refresh_token TEXT NOT NULL,
            access_token TEXT,
            token_expiry TEXT,
            scopes TEXT NOT NULL DEFAULT '[]',
            updated_at TEXT NOT NULL
        );
        CREATE TABLE token_health (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'unknown',
            last_checked TEXT,
            error_message TEXT,
            PRIMARY KEY (user_id, integration_type)
        );
        CREATE INDEX idx_token_health_status ON token_health(status);
        CREATE TABLE circuit_breaker_state (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'closed',
            failure_count INTEGER NOT NULL DEFAULT 0,
            last_failure_at TEXT,
            last_failure_reason TEXT,
            opened_at TEXT,
            next_retry_at TEXT,
            PRIMARY KEY (user_id, integration_type)
        );
        CREATE INDEX idx_breaker_state ON circuit_breaker_state(state);
        CREATE TABLE sync_schedule (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            default_frequency_seconds INTEGER NOT NULL,
            current_frequency_seconds INTEGER NOT NULL,
            consecutive_no_changes INTEGER NOT NULL DEFAULT 0,
            last_sync_at TEXT,
            next_sync_at TEXT NOT NULL,
            pending_trigger TEXT,
            PRIMARY KEY (user_id, integration_type)
        );
        CREATE INDEX idx_sync_schedule_next ON sync_schedule(next_sync_at);
        CREATE TABLE sync_metrics (
            id INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            sync_type TEXT,
            trigger TEXT NOT NULL,
            result TEXT NOT NULL,
            skip_reason TEXT,
            duration_ms INTEGER NOT NULL DEFAULT 0,
            items_processed INTEGER NOT NULL DEFAULT 0,
            items_added INTEGER NOT NULL DEFAULT 0,
            items_updated INTEGER NOT NULL DEFAULT 0,
            items_deleted INTEGER NOT NULL DEFAULT 0,
            full_resync INTEGER NOT NULL DEFAULT 0,
            breaker_trial INTEGER NOT NULL DEFAULT 0,
            api_calls_made INTEGER NOT NULL DEFAULT 0,
            api_calls_saved INTEGER NOT NULL DEFAULT 0,
            saved_by TEXT,
            error_class TEXT,
            error_message TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX idx_sync_metrics_created ON sync_metrics(created_at);
        CREATE INDEX idx_sync_metrics_user ON sync_metrics(user_id, integration_type, created_at);
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at TEXT NOT NULL,
            resolved_at TEXT
        );
        CREATE INDEX idx_notifications_open ON notifications(user_id, kind, resolved_at);
        CREATE TABLE sync_tokens (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            scope TEXT NOT NULL,
            token TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (user_id, integration_type, scope)
        );
        CREATE TABLE contacts (
            user_id TEXT NOT NULL,
            resource_name TEXT NOT NULL,
            etag TEXT,
            display_name TEXT,
            emails TEXT NOT NULL DEFAULT '[]',
            phones TEXT NOT NULL DEFAULT '[]',
            organizations TEXT NOT NULL DEFAULT '[]',
            birthdays TEXT NOT NULL DEFAULT '[]',
            addresses TEXT NOT NULL DEFAULT '[]',
            biographies TEXT NOT NULL DEFAULT '[]',
            memberships TEXT NOT NULL DEFAULT '[]',
            updated TEXT,
            sync_generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, resource_name)
        );
        CREATE TABLE contact_groups (
            user_id TEXT NOT NULL,
            resource_name TEXT NOT NULL,
            etag TEXT,
            name TEXT,
            group_type TEXT,
            member_count INTEGER,
            updated TEXT,
            sync_generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, resource_name)
        );
        CREATE TABLE calendars (
            user_id TEXT NOT NULL,
            calendar_id TEXT NOT NULL,
            etag TEXT,
            summary TEXT,
            time_zone TEXT,
            access_role TEXT,
            is_primary INTEGER NOT NULL DEFAULT 0,
            sync_generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, calendar_id)
        );
        CREATE TABLE calendar_events (
            user_id TEXT NOT NULL,
            calendar_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            etag TEXT,
            status TEXT,
            summary TEXT,
            start TEXT,
            "end" TEXT,
            updated TEXT,
            recurring_event_id TEXT,
            ical_uid TEXT,
            sync_generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, calendar_id, event_id)
        );
        CREATE TABLE webhook_channels (
            channel_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            calendar_id TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            token TEXT NOT NULL,
            address TEXT NOT NULL,
            expiration TEXT NOT NULL,
            created_at TEXT NOT NULL,
            stopped_at TEXT
        );
        CREATE INDEX idx_webhook_channels_user ON webhook_channels(user_id, calendar_id);
"""


# Forward-only migrations: MIGRATIONS[n] is the SQL that takes version n to n + 1.
# v2: the hourly rollup of sync_metrics that keeps `syncctl report` fast over a year of rows.
MIGRATIONS: list[str] = [SCHEMA_V1, ROLLUP_MIGRATION]
SCHEMA_VERSION = len(MIGRATIONS)


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
