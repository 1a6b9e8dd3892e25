import gc
import os
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncctl.clock import to_iso
from syncctl.model import Integration, TokenStatus
from syncctl.store import DatabaseError, open_database, transaction
from syncctl.store.db import schema_version
from syncctl.store.schema import SCHEMA_VERSION
from syncctl.store.state import save_token_health


def test_new_database_is_private_wal_and_versioned(tmp_path):
    path = tmp_path / "nested" / "syncctl.db"
    db = open_database(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert schema_version(db) == SCHEMA_VERSION
    assert {"users", "sync_metrics", "sync_schedule", "webhook_channels"} <= set(db.table_names())


def test_reopening_keeps_data(tmp_path):
    path = tmp_path / "s.db"
    db = open_database(path)
    db.conn.execute("INSERT INTO users VALUES ('u1', NULL, 'x', 'x')")
    db.close()
    assert open_database(path).conn.execute("SELECT id FROM users").fetchall() == [("u1",)]


@pytest.mark.parametrize(
    "content",
    [b"random bytes that are not sqlite" * 10, b"SQLite format 3\x00" + b"\x07" * 200],
)
def test_non_database_file_is_refused_and_untouched(tmp_path, content):
    path = tmp_path / "other.db"
    path.write_bytes(content)
    with pytest.raises(DatabaseError):
        open_database(path)
    assert path.read_bytes() == content
    assert not (tmp_path / "other.db-wal").exists()


def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="not a syncctl"):
        open_database(path)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    open_database(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseError, match="newer"):
        open_database(path)


def test_version_1_database_migrates_forward_in_place(tmp_path):
    # GIVEN a database made by schema version 1 with an attempt already recorded
    from syncctl.store.db import APPLICATION_ID, _statements
    from syncctl.store.schema import MIGRATIONS

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    for statement in _statements(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO sync_metrics (user_id, integration_type, trigger, result, api_calls_made,"
        " created_at) VALUES ('u1', 'google_calendar', 'scheduled', 'success', 4,"
        " '2026-11-29T05:00:00+00:00')"
    )
    conn.commit()
    conn.close()

    # WHEN the current syncctl opens it
    db = open_database(path)

    # THEN it is at the current version, the old row is kept and the rollup covers it
    assert schema_version(db) == SCHEMA_VERSION
    assert db.conn.execute("SELECT api_calls_made FROM sync_metrics").fetchall() == [(4,)]
    assert db.conn.execute(
        "SELECT hour, attempts, api_calls_made FROM sync_metrics_hourly"
    ).fetchall() == [("2026-11-29T05", 1, 4)]


def test_connections_to_one_file_share_one_write_lock_per_process(tmp_path):
    # Threads queue on it before BEGIN IMMEDIATE instead of sleeping in SQLite's busy handler.
    first = open_database(tmp_path / "a.db")
    (tmp_path / "link.db").symlink_to(tmp_path / "a.db")
    second = open_database(tmp_path / "link.db")
    other = open_database(tmp_path / "b.db")

    assert first.syncctl_write_lock is second.syncctl_write_lock
    assert first.syncctl_write_lock is not other.syncctl_write_lock
    taken: list[bool] = []

    def try_lock() -> None:
        taken.append(second.syncctl_write_lock.acquire(blocking=False))

    with transaction(first):
        thread = threading.Thread(target=try_lock)
        thread.start()
        thread.join()
    assert taken == [False]  # held by the open transaction: another thread waits its turn
    for db in (first, second, other):
        db.close()


def test_a_second_connection_in_one_process_keeps_the_first_ones_writes_visible(tmp_path):
    # Re-reading the header with open()/close() dropped the process's POSIX locks: another
    # process's closing connection then unlinked the WAL and later commits went nowhere.
    import subprocess
    import sys

    path = tmp_path / "syncctl.db"
    first = open_database(path)
    second = open_database(path)
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        " print(c.execute(sys.argv[2]).fetchone()[0]); c.close()"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(path), "SELECT count(*) FROM users"], check=True
    )
    first.conn.execute(
        "INSERT INTO notifications (user_id, kind, message, created_at) VALUES ('u', 'k', 'm', 't')"
    )
    count = "SELECT count(*) FROM notifications"
    seen = subprocess.run(
        [sys.executable, "-c", script, str(path), count], check=True, capture_output=True, text=True
    ).stdout.strip()
    second.close()
    first.close()
    assert seen == "1"


@pytest.mark.parametrize(
    ("stored", "verdict"),
    [(None, "valid"), ("valid", "valid"), ("valid", "revoked"), ("revoked", "valid")],
)
def test_a_token_health_verdict_is_stored_whatever_was_there(tmp_path, stored, verdict):
    db = open_database(tmp_path / "t.db")
    before = datetime(2026, 12, 1, tzinfo=UTC)
    later = before + timedelta(hours=4)
    if stored is not None:
        with transaction(db) as tx:
            save_token_health(tx, "u1", [Integration.CALENDAR], TokenStatus(stored), now=before)

    with transaction(db) as tx:
        save_token_health(
            tx, "u1", [Integration.CALENDAR], TokenStatus(verdict), now=later, error_message="m"
        )

    rows = db.conn.execute(
        "SELECT user_id, integration_type, status, last_checked, error_message FROM token_health"
    ).fetchall()
    assert rows == [("u1", "google_calendar", verdict, to_iso(later), "m")]
    by_status = db.conn.execute(
        "SELECT count(*) FROM token_health INDEXED BY idx_token_health_status WHERE status = ?",
        [verdict],
    ).fetchone()
    assert by_status == (1,)  # the status index agrees with the row


def test_a_version_8_database_keeps_its_leases_in_a_table_without_rowid(tmp_path):
    # GIVEN a database of schema version 8 with a lease held
    from syncctl.store.db import APPLICATION_ID, _statements
    from syncctl.store.schema import MIGRATIONS

    path = tmp_path / "v8.db"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:8]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 8")
    held = ("u1", "google_calendar", "host/42/abc", "2026-12-04T22:00:00+00:00")
    conn.execute("INSERT INTO sync_leases VALUES (?, ?, ?, ?)", held)
    conn.commit()
    conn.close()

    # WHEN the current syncctl opens it
    db = open_database(path)

    # THEN the lease is still held, in a table keyed by the pair alone
    assert schema_version(db) == SCHEMA_VERSION
    assert db.conn.execute("SELECT * FROM sync_leases").fetchall() == [held]
    tables = {row[1]: row[4] for row in db.conn.execute("PRAGMA table_list")}
    assert tables["sync_leases"] == 1  # WITHOUT ROWID
    assert "sync_leases_keyed" not in tables


def test_threads_opening_one_database_at_once_inspect_the_file_outside_sqlite_once(
    tmp_path, monkeypatch
):
    # Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
    # included: once one thread's connection is open, no other thread may open and close the
    # file itself to read its header (another process could then delete a WAL still in use).
    from syncctl.store import db as store_db

    path = tmp_path / "shared.db"
    open_database(path).close()
    gc.collect()  # the closed database is forgotten: no connection of this process is left
    assert not store_db._already_open(path)
    inspected: list[Path] = []
    inspect = store_db._refuse_foreign_file
    monkeypatch.setattr(
        store_db, "_refuse_foreign_file", lambda p: (inspected.append(p), inspect(p))[1]
    )
    start = threading.Barrier(16)
    opened = []

    def open_at_once() -> None:
        start.wait()
        opened.append(open_database(path))

    threads = [threading.Thread(target=open_at_once) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(opened) == 16
    assert inspected == [path]  # the first open only, before any connection existed
    for db in opened:
        db.close()
