"""The syncctl command line: a thin Typer skin over the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from syncctl.cli import _output
from syncctl.cli._context import AppState
from syncctl.config import ConfigError, Env, load_settings
from syncctl.secrets import SecretsError
from syncctl.store import DatabaseError
from syncctl.users import BadInput

EXIT_BAD_INPUT = 2
# Recent Typer releases vendor click, so find its UsageError through a public subclass.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
# Expected failures that become one line on stderr and exit code 2, never a traceback.
BAD_INPUT_ERRORS = (BadInput, ConfigError, DatabaseError, SecretsError, UsageError)


class SyncctlGroup(TyperGroup):
    """The root group: turns every expected failure into one line and exit code 2."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[override]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:
            raise _bad_input(exc) from exc

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except BAD_INPUT_ERRORS as exc:
            raise _bad_input(exc) from exc
        finally:
            if isinstance(ctx.obj, AppState):
                ctx.obj.close()


def _bad_input(exc: Exception) -> typer.Exit:
    if isinstance(exc, UsageError):
        where = exc.ctx.command_path + ": " if exc.ctx else ""
        _output.error(where + exc.format_message())
    else:
        _output.error(str(exc))
    return typer.Exit(EXIT_BAD_INPUT)


app = typer.Typer(
    cls=SyncctlGroup,
    help="Keep many users' Google Contacts and Calendar mirrored into SQLite.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help=f"SQLite database path (env {Env.DB}; default $XDG_DATA_HOME/syncctl/syncctl.db).",
            envvar=Env.DB,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """syncctl: orchestrated, cheap and safe Google Contacts and Calendar sync into SQLite.

    Example: syncctl --db fleet.db run-due
    """
    ctx.obj = AppState(settings=load_settings(db=db))


def _register() -> None:
    from syncctl.cli import demo, fake_google, health, report, secrets, sync, user, webhook

    app.command("run-due")(sync.run_due_command)
    app.command("sync")(sync.sync_command)
    app.command("health")(health.health_command)
    app.add_typer(health.breaker_app, name="breaker")
    app.command("report")(report.report_command)
    app.add_typer(user.app, name="user")
    app.add_typer(secrets.app, name="secrets")
    app.add_typer(fake_google.app, name="fake-google")
    app.command("demo")(demo.demo_command)
    app.command("simulate")(demo.simulate_command)
    app.add_typer(webhook.app, name="webhook")


_register()


def main() -> None:
    """Console-script entry point."""
    app()
