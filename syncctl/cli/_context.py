"""Per-invocation state shared by commands: resolved settings and a lazily opened database."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlite_utils
import typer

from syncctl.config import Settings
from syncctl.secrets import SecretsError, configured_keyring
from syncctl.store import open_database
from syncctl.store import secrets as secret_store


@dataclass
class AppState:
    """What the global options resolved to; the database opens on first use."""

    settings: Settings
    _db: sqlite_utils.Database | None = field(default=None, repr=False)

    @property
    def db(self) -> sqlite_utils.Database:
        """The database, once the secret key is known to open its secrets (else SecretsError)."""
        if self._db is None:
            configured_keyring()  # a malformed key is refused before the database is touched
            db = self.database_unchecked()
            try:
                secret_store.require_key(db.conn)
            except SecretsError:
                self.close()
                raise
        return self.database_unchecked()

    def database_unchecked(self) -> sqlite_utils.Database:
        """The database without the key check (`syncctl secrets` does its own)."""
        if self._db is None:
            self._db = open_database(self.settings.db_path)
        return self._db

    def check_secrets(self) -> None:
        """Open the database and check the secret key before a command changes anything."""
        self.db  # noqa: B018 (the property checks)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def app_state(ctx: typer.Context) -> AppState:
    """The AppState the root callback stored."""
    return ctx.find_root().obj
