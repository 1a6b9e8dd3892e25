"""SQLite only: opening and migrating the database, and reading and writing its tables."""

from syncctl.store.db import DatabaseError, open_database, transaction

__all__ = ["DatabaseError", "open_database", "transaction"]
