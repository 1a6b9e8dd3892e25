"""`syncctl user`: add, connect, import, list and remove users."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from syncctl import users
from syncctl.cli import _output
from syncctl.cli._context import app_state
from syncctl.clock import utcnow
from syncctl.store import users as user_store

app = typer.Typer(help="Add, connect, import, list and remove users.", no_args_is_help=True)

EXIT_NOT_CONNECTED = 1  # the consent was denied or did not finish (bad input exits 2)
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("add")
def add(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="Your id for the user.")],
    credentials: Annotated[
        Path, typer.Option("--credentials", help="Google authorized-user JSON file.")
    ],
    integrations: Annotated[
        str | None, typer.Option(help="contacts, calendar, or both comma-separated (default all).")
    ] = None,
    email: Annotated[str | None, typer.Option(help="The user's email, for operators.")] = None,
) -> None:
    """Add a user, or reconnect a known one with new credentials.

    Example: syncctl user add u1 --credentials u1.json --integrations contacts,calendar
    """
    state = app_state(ctx)
    chosen = users.integrations_option(integrations) if integrations is not None else None
    grant = users.read_credentials_file(credentials)
    is_new = users.add_user(
        state.db, state.settings, user_id, grant, now=utcnow(), integrations=chosen, email=email
    )
    _output.say(f"{'added' if is_new else 'reconnected'} user {user_id}")


@app.command("connect")
def connect(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="Your id for the user.")],
    client_secrets: Annotated[
        Path,
        typer.Option(
            "--client-secrets", dir_okay=False, help="OAuth client JSON from Google's console."
        ),
    ],
    integrations: Annotated[
        str | None, typer.Option(help="contacts, calendar, or both comma-separated (default all).")
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="The user's email (also the account Google suggests).")
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="Loopback port for Google's redirect (0: any free one)."
        ),
    ] = 0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the URL; open it anywhere.")
    ] = False,
) -> None:
    """Connect a real Google account: consent in a browser, then store the grant as `user add`.

    The URL goes to stderr; Google redirects to 127.0.0.1:PORT. On a headless server, forward
    the port first (ssh -L 8765:127.0.0.1:8765 server) and pass --port 8765 --no-browser.

    Example: syncctl user connect u1 --client-secrets client_secret.json --email a@example.com
    """
    from syncctl.google.consent import ConsentError

    state = app_state(ctx)
    chosen = users.integrations_option(integrations) if integrations is not None else None
    client = users.read_client_secrets(client_secrets)
    users.check_user_id(user_id)
    try:
        is_new = users.connect_user(
            state.db,
            state.settings,
            user_id,
            client,
            announce=_output.note,
            clock=utcnow,
            integrations=chosen,
            email=email,
            port=port,
            open_browser=not no_browser,
        )
    except ConsentError as exc:
        _output.error(str(exc))
        raise typer.Exit(EXIT_NOT_CONNECTED) from exc
    _output.say(f"{'connected' if is_new else 'reconnected'} user {user_id}")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(help="JSON Lines: one {id, email?, integrations?, credentials} a line."),
    ],
) -> None:
    """Add or reconnect many users from JSON Lines; any bad line imports nothing.

    Example: syncctl user import users.jsonl
    """
    state = app_state(ctx)
    # Opened only once every line is valid: a refused file creates no database.
    report = users.import_users(lambda: state.db, state.settings, file, now=utcnow())
    if report.bad_lines:
        for number, problem in report.bad_lines:
            _output.note(f"{file}:{number}: {problem}")
        raise users.BadInput(f"{len(report.bad_lines)} bad line(s) in {file}; nothing imported")
    _output.say(f"imported {report.imported} user(s), {report.new} new")


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List users and their integrations.

    Example: syncctl user list --json
    """
    rows = user_store.list_users(app_state(ctx).db.conn)
    if json_output:
        _output.print_json({"users": rows})
        return
    _output.print_table(
        "Users",
        ["id", "email", "integrations", "created"],
        [(r["id"], r["email"], ",".join(r["integrations"]), r["created_at"]) for r in rows],
    )


@app.command("remove")
def remove(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user to remove.")],
    purge: Annotated[
        bool, typer.Option("--purge", help="Delete the user's synced data too.")
    ] = False,
) -> None:
    """Remove a user (and with --purge, its synced contacts and calendars).

    Example: syncctl user remove u1 --purge
    """
    state = app_state(ctx)
    # Each channel that could not be stopped is already logged once, as a warning on stderr.
    users.remove_user(state.db, state.settings, user_id, purge=purge, now=utcnow())
    _output.say(f"removed user {user_id}{' and its data' if purge else ''}")
