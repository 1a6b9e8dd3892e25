"""One SQLite connection and one pool of keep-alive connections to Google per thread, opened on
first use and closed together."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlite_utils

from syncctl.google.transport import KeepAlivePool
from syncctl.store import open_database


class ConnectionPool:
    """Per-thread connections to one database; thread-safe."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = db_path
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite_utils.Database] = {}
        self._http: dict[threading.Thread, KeepAlivePool] = {}
        self._lock = threading.Lock()

    def db(self) -> sqlite_utils.Database:
        """This thread's connection to the database."""
        db = getattr(self._local, "db", None)
        if db is None:
            # Never creates one: a database deleted mid-run must not reappear empty.
            db = open_database(self.db_path, create=False)
            self._local.db = db
            with self._lock:
                self._connections[threading.current_thread()] = db
        return db

    def http(self) -> KeepAlivePool:
        """This thread's keep-alive connections to Google (sessions reuse them in turn)."""
        pool = getattr(self._local, "http", None)
        if pool is None:
            pool = KeepAlivePool()
            self._local.http = pool
            with self._lock:
                self._http[threading.current_thread()] = pool
        return pool

    def close(self) -> None:
        """Close every connection this pool opened."""
        with self._lock:
            for db in self._connections.values():
                db.close()
            self._connections.clear()
            for pool in self._http.values():
                pool.close()
            self._http.clear()
        self._local = threading.local()

    def close_finished_threads(self) -> None:
        """Close the connections of threads that have ended.

        Each fleet loop has its own worker threads; without this a long-lived pool (the
        simulator, a daemon) would keep one open connection per worker thread it ever had.
        """
        with self._lock:
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
            for thread in [t for t in self._http if not t.is_alive()]:
                self._http.pop(thread).close()
