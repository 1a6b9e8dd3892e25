"""Per-invocation state shared by commands: resolved settings and a lazily opened database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlite_utils
import typer

from syncctl.config import Settings
from syncctl.secrets import SecretsError, configured_keyring
from syncctl.store import open_database
from syncctl.store import secrets as secret_store

# Only these commands may create a database (SPEC 1): a mistyped --db or SYNCCTL_DB given to
# any other command fails loudly instead of syncing an empty database forever.
CREATING_COMMANDS = frozenset({("user", "add"), ("user", "import"), ("user", "connect")})


class AppState:
    """What the global options resolved to. Settings load, and the database opens, on first use,
    so `--help` works whatever the configuration holds."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        load: Callable[[], Settings] | None = None,
        may_create: bool = False,
    ) -> None:
        if settings is None and load is None:
            raise ValueError("AppState needs settings or a way to load them")
        self._settings = settings
        self._load = load or (lambda: settings)  # type: ignore[return-value]
        self.may_create = may_create
        self._db: sqlite_utils.Database | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._load()
        return self._settings

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
            self._db = open_database(self.settings.db_path, create=self.may_create)
        return self._db

    def check_secrets(self) -> None:
        """Open the database and check the secret key before a command changes anything."""
        self.db  # noqa: B018 (the property checks)

    def db_path_if_known(self) -> Path | None:
        """The database path, if the settings are loaded (for error messages)."""
        return self._settings.db_path if self._settings is not None else None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def app_state(ctx: typer.Context) -> AppState:
    """The AppState the root callback stored (allowed to create the database only for the
    commands that may)."""
    state: AppState = ctx.find_root().obj
    if ctx.parent is not None and (ctx.parent.info_name, ctx.info_name) in CREATING_COMMANDS:
        state.may_create = True
    return state
