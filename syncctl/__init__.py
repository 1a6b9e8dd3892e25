"""syncctl: mirror many users' Google Contacts and Calendar into SQLite."""

__version__ = "0.1.0"
