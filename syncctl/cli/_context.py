"""Per-invocation state shared by commands: resolved settings and a lazily opened database."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlite_utils
import typer

from syncctl.config import Settings
from syncctl.store import open_database


@dataclass
class AppState:
    """What the global options resolved to; the database opens on first use."""

    settings: Settings
    _db: sqlite_utils.Database | None = field(default=None, repr=False)

    @property
    def db(self) -> sqlite_utils.Database:
        if self._db is None:
            self._db = open_database(self.settings.db_path)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def app_state(ctx: typer.Context) -> AppState:
    """The AppState the root callback stored."""
    return ctx.find_root().obj
