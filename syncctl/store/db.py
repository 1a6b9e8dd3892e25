"""Open, create and migrate the syncctl SQLite database; refuse files that are not ours."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from syncctl.store.schema import MIGRATIONS, SCHEMA_VERSION

APPLICATION_ID = 0x53594E43  # "SYNC": marks a file as a syncctl database
BUSY_TIMEOUT_MS = 30_000
HEADER_BYTES = 108  # the 100-byte database header and the schema page's 8-byte b-tree header
INTERIOR_TABLE_PAGE = 0x05  # a schema table spanning several pages has tables, whatever count
# One write lock per database file and process. SQLite's busy handler makes a blocked writer
# sleep and poll (1, 2, 5, ... up to 100 ms), so threads of one process that queue here instead
# take the write lock the moment it is free; only other processes meet the busy handler.
_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


class DatabaseError(Exception):
    """The database file cannot be used (not ours, unreadable, or from a newer syncctl)."""


class MissingDatabase(DatabaseError):
    """No database exists at the path, and the caller may not create one."""


def open_database(path: Path | str, *, create: bool = True) -> sqlite_utils.Database:
    """Open and migrate the database at path; with `create`, make it (mode 0600) if missing.

    Every refusal is a DatabaseError with a one-line message, and nothing is created beside a
    file that is refused (no journal, no lock, no directories).
    """
    if not str(path):
        raise DatabaseError("the database path is empty")
    path = Path(path)
    if str(path) == ":memory:":
        return _connect(path)
    # One open at a time in this process: a thread that inspected the file while another
    # thread's new connection already held SQLite's locks on it would drop them (_already_open).
    with _OPENING:
        _check_location(path, create=create)
        if not _already_open(path):
            _refuse_foreign_file(path)
        db = _connect(path)
        with _FILES_LOCK:
            _FILES[db] = _identity(path)
    return db


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:  # the file header read before can lag behind the WAL
            raise sqlite3.DatabaseError(f"schema version {version} is newer; upgrade syncctl")
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(f"{path}: cannot open the database ({_one_line(exc)})") from exc
    # isolation_level=None lets us issue explicit BEGIN IMMEDIATE in transaction().
    db = sqlite_utils.Database(conn)
    db.syncctl_write_lock = _write_lock(path)  # type: ignore[attr-defined]
    return db


# The file each connection opened (path, device, inode): a write after the file was deleted or
# replaced would go to a file nobody will ever read, so transaction() refuses it.
_FILES: weakref.WeakKeyDictionary[sqlite_utils.Database, tuple[Path, int, int]] = (
    weakref.WeakKeyDictionary()
)


_FILES_LOCK = threading.Lock()
_OPENING = threading.Lock()


def _already_open(path: Path) -> bool:
    """Whether this process already has the file open through open_database.

    Then the file was inspected already, and it must not be opened and closed again outside
    SQLite: closing any descriptor of a file drops every POSIX lock the process holds on it,
    SQLite's included, and another process could then checkpoint a WAL still in use.
    """
    info = path.stat()
    with _FILES_LOCK:
        known = list(_FILES.values())
    return any((device, inode) == (info.st_dev, info.st_ino) for _, device, inode in known)


def _identity(path: Path) -> tuple[Path, int, int]:
    info = path.stat()
    return path, info.st_dev, info.st_ino


def _check_still_there(db: sqlite_utils.Database) -> None:
    with _FILES_LOCK:
        known = _FILES.get(db)
    if known is None:
        return
    path, device, inode = known
    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is None or (info.st_dev, info.st_ino) != (device, inode):
        raise DatabaseError(
            f"the database {path} was deleted or replaced while syncctl was using it;"
            " nothing more was written"
        )


def _write_lock(path: Path) -> threading.RLock:
    key = str(path) if str(path) == ":memory:" else str(path.resolve())
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.RLock())


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """One all-or-nothing unit of writes: BEGIN IMMEDIATE ... COMMIT, rolled back on error."""
    if db.conn.in_transaction:
        with db.atomic():  # nested: a savepoint inside the outer unit
            yield db.conn
        return
    lock = getattr(db, "syncctl_write_lock", None)
    if lock is None:
        with _immediate(db.conn) as conn:
            _check_still_there(db)
            yield conn
        return
    # The file check (a system call, so a GIL hand-off) comes before the lock: at 64 threads
    # every hand-off made while holding the write lock keeps the other writers waiting.
    _check_still_there(db)
    with lock, _immediate(db.conn) as conn:
        yield conn


def _check_location(path: Path, *, create: bool) -> None:
    """The path names a regular file, or (with create) a new one is made there with mode 0600."""
    try:
        info = path.stat()
    except FileNotFoundError:
        info = None
    except NotADirectoryError as exc:
        raise DatabaseError(f"{path}: {_parent_file(path)} is a file, not a directory") from exc
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot inspect the database ({exc.strerror})") from exc
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise DatabaseError(f"{path} is a directory, not a database file")
        if not stat.S_ISREG(info.st_mode):
            raise DatabaseError(f"{path} is not a regular file; left untouched")
        if info.st_size == 0 and not create:
            raise MissingDatabase(f"no syncctl database at {path} (the file is empty)")
        return
    if not create:
        raise MissingDatabase(f"no syncctl database at {path}")
    _create_private_file(path)


def _parent_file(path: Path) -> Path:
    """The nearest ancestor of path that exists and is not a directory."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path.parent


def _create_private_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise DatabaseError(
            f"cannot create {path}: {_parent_file(path)} is a file, not a directory"
        ) from exc
    except OSError as exc:
        raise DatabaseError(f"cannot create the directory of {path} ({exc.strerror})") from exc
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise DatabaseError(f"cannot create {path} ({exc.strerror})") from exc
    os.close(fd)


def _check_writable(path: Path) -> None:
    """SQLite writes the file and, in WAL mode, creates -wal and -shm files beside it."""
    if not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseError(
            f"{path} is read-only for this user (syncctl needs to read and write it)"
        )
    folder = path.parent
    sidecars = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    if not os.access(folder, os.W_OK | os.X_OK) and not all(p.exists() for p in sidecars):
        raise DatabaseError(
            f"the directory {folder} is not writable (SQLite keeps its -wal and -shm files"
            f" beside {path.name})"
        )


def _refuse_foreign_file(path: Path) -> None:
    """Inspect read-only so that a file that is not ours is left byte-for-byte untouched."""
    if path.stat().st_size == 0:
        _check_writable(path)
        return
    try:
        with open(path, "rb") as handle:
            header = handle.read(HEADER_BYTES)
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot read the database file ({exc.strerror})") from exc
    if not header.startswith(b"SQLite format 3\x00"):
        raise DatabaseError(f"{path} is not a syncctl database (not SQLite); left untouched")
    if len(header) < HEADER_BYTES:
        raise DatabaseError(f"{path} is not a readable SQLite database; left untouched")
    _check_writable(path)
    # Read from the file header (sqlite.org/fileformat2.html), not through SQLite: even a
    # read-only connection leaves -wal and -shm files beside a database in WAL mode.
    version = int.from_bytes(header[60:64], "big")
    application_id = int.from_bytes(header[68:72], "big")
    schema_page_type, schema_cells = header[100], int.from_bytes(header[103:105], "big")
    table_count = 1 if schema_page_type == INTERIOR_TABLE_PAGE else schema_cells
    if application_id != APPLICATION_ID and table_count > 0:
        raise DatabaseError(f"{path} is an SQLite database but not a syncctl one; left untouched")
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} has schema version {version}, newer than this syncctl ({SCHEMA_VERSION});"
            " upgrade syncctl"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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
