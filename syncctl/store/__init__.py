"""SQLite only: opening and migrating the database, and reading and writing its tables."""

from syncctl.store.db import DatabaseError, MissingDatabase, open_database, transaction

__all__ = ["DatabaseError", "MissingDatabase", "open_database", "transaction"]
