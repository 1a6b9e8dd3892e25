"""The syncctl command line: a thin Typer skin over the library."""

from __future__ import annotations

import logging
import sqlite3
from typing import Annotated

import typer
from typer.core import TyperGroup

from syncctl import __version__
from syncctl.cli import _output
from syncctl.cli._context import AppState
from syncctl.config import ConfigError, Env, load_settings
from syncctl.secrets import SecretsError
from syncctl.store import DatabaseError, MissingDatabase
from syncctl.users import BadInput

EXIT_BAD_INPUT = 2
# Recent Typer releases vendor click, so find its UsageError through a public subclass.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
# Expected failures that become one line on stderr and exit code 2, never a traceback.
BAD_INPUT_ERRORS = (BadInput, ConfigError, DatabaseError, SecretsError, UsageError)
# A bad environment (permissions, a full disk, a database that SQLite refuses) is exit 2 too.
ENVIRONMENT_ERRORS = (sqlite3.Error, OSError)


class SyncctlGroup(TyperGroup):
    """The root group: turns every expected failure into one line and exit code 2."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[override]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:
            raise _bad_input(exc) from exc
        except BrokenPipeError as exc:  # `syncctl --help | head -1`
            raise _reader_gone() from exc

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        _log_to_stderr()
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:  # only click's own output (help) gets here: see _output
            raise _reader_gone() from exc
        except BAD_INPUT_ERRORS as exc:
            raise _bad_input(exc) from exc
        except ENVIRONMENT_ERRORS as exc:
            raise _bad_environment(exc, ctx) from exc
        finally:
            if isinstance(ctx.obj, AppState):
                ctx.obj.close()


def _reader_gone() -> typer.Exit:
    """The reader of stdout went away while click printed: quietly, and success."""
    _output.stdout_closed()
    return typer.Exit(0)


def _bad_input(exc: Exception) -> typer.Exit:
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, and success
        _output.print_text(exc.ctx.get_help() + "\n")
        return typer.Exit(0)
    if isinstance(exc, MissingDatabase):
        _output.error(
            f"{exc}; `syncctl user add` or `syncctl user import` creates one"
            f" (check --db and {Env.DB})"
        )
    elif isinstance(exc, UsageError):
        where = exc.ctx.command_path + ": " if exc.ctx else ""
        _output.error(where + exc.format_message())
    else:
        _output.error(str(exc))
    return typer.Exit(EXIT_BAD_INPUT)


def _bad_environment(exc: Exception, ctx: typer.Context) -> typer.Exit:
    """One line for an OS or SQLite failure, naming the file when the error knows it."""
    state = ctx.obj if isinstance(ctx.obj, AppState) else None
    if isinstance(exc, OSError):
        where = exc.filename or "a file"
        detail = exc.strerror or type(exc).__name__
        _output.error(f"{where}: {detail}")
    else:
        path = state.db_path_if_known() if state else None
        detail = " ".join(str(exc).split()) or type(exc).__name__
        _output.error(f"database {path}: {detail}" if path else f"database error: {detail}")
    return typer.Exit(EXIT_BAD_INPUT)


class _StderrLines(logging.Handler):
    """Library warnings as one `syncctl: warning:` line each on stderr (never a traceback)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = " ".join(record.getMessage().split())
        except Exception:  # noqa: BLE001 -- a bad log call must not stop a command
            message = str(record.msg)
        _output.note(f"syncctl: {record.levelname.lower()}: {message}")


def _log_to_stderr() -> None:
    logger = logging.getLogger("syncctl")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        # Found before Python's last-resort handler, so nothing is printed twice; records
        # still propagate to whatever the host application (or pytest) configured.
        logger.addHandler(_StderrLines(logging.WARNING))


app = typer.Typer(
    cls=SyncctlGroup,
    help="Keep many users' Google Contacts and Calendar mirrored into SQLite.",
    no_args_is_help=True,  # bare `syncctl` prints help and exits 0 (see _bad_input)
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        _output.say(f"syncctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="PATH",
            help=f"SQLite database path (env {Env.DB}; default $XDG_DATA_HOME/syncctl/syncctl.db;"
            " only `user add`, `user import` and `user connect` create it).",
            show_envvar=False,
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="PATH",
            help=f"TOML configuration file (env {Env.CONFIG}; default"
            " $XDG_CONFIG_HOME/syncctl/config.toml, read if it exists).",
            show_envvar=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """syncctl: orchestrated, cheap and safe Google Contacts and Calendar sync into SQLite.

    Example: syncctl --db fleet.db run-due
    """
    # Loaded when a command first needs them, so `syncctl CMD --help` never reads the config.
    ctx.obj = AppState(load=lambda: load_settings(db=db, config=config))


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
