"""`syncctl health` and `syncctl breaker`: token health and circuit breakers."""

from __future__ import annotations

from typing import Annotated

import typer

from syncctl import users
from syncctl.cli import _output
from syncctl.cli._context import app_state
from syncctl.model import TokenStatus
from syncctl.report import fleet_breakers
from syncctl.report_render.sections import fleet_breaker_section
from syncctl.store import state as state_store
from syncctl.store import users as user_store

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def health_command(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this user.")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Verify now with a token refresh and store the verdict.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Token health per user and integration; exit 1 if any token is revoked.

    Example: syncctl health --check --user u1
    """
    state = app_state(ctx)
    if user is not None:
        users.require_user(state.db, user)
    problems: dict[str, str] = {}
    if check:
        targets = [user] if user else [u["id"] for u in user_store.list_users(state.db.conn)]
        from syncctl.fleet import check_tokens  # loads the Google stack
        from syncctl.orchestrator import orchestrator

        with orchestrator(state.settings) as runner:
            checked = check_tokens(runner, targets)
        problems = {user_id: problem for user_id, (_, problem) in checked.items() if problem}
    rows = _output.with_shown_integrations(state_store.list_token_health(state.db.conn, user))
    for row in rows:
        row["check_error"] = problems.get(row["user_id"])
    if json_output:
        _output.print_json({"token_health": rows})
    else:
        _output.print_table(
            "Token health",
            ["user", "integration", "status", "last checked", "error"],
            [
                (
                    r["user_id"],
                    r["integration_type"],
                    r["status"],
                    r["last_checked"],
                    r["check_error"] or r["error_message"],
                )
                for r in rows
            ],
        )
    if any(r["status"] == TokenStatus.REVOKED for r in rows):
        raise typer.Exit(1)


breaker_app = typer.Typer(help="Circuit breakers per user and integration.", no_args_is_help=True)


@breaker_app.command("list")
def breaker_list(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list closed breakers with no failures.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List breakers that are open, half-open or counting failures (all of them with --all).

    Example: syncctl breaker list --json
    """
    conn = app_state(ctx).db.conn
    rows = _output.with_shown_integrations(
        state_store.list_breakers(conn, active_only=not show_all)
    )
    # A fleet has a breaker per user and integration; the quiet ones are only counted.
    quiet = 0 if show_all else state_store.count_quiet_breakers(conn)
    fleet = fleet_breakers(conn)
    if json_output:
        _output.print_json(
            {"breakers": rows, "closed_without_failures_not_listed": quiet, "fleet": fleet}
        )
        return
    table = fleet_breaker_section(fleet)
    _output.print_table(table.title, table.columns, table.rows, caption=table.caption)
    _output.print_table(
        "Circuit breakers",
        ["user", "integration", "state", "failures", "last failure", "reason", "retry at"],
        [
            (
                r["user_id"],
                r["integration_type"],
                r["state"],
                r["failure_count"],
                r["last_failure_at"],
                r["last_failure_reason"],
                r["next_retry_at"],
            )
            for r in rows
        ],
        caption=f"{quiet} closed without failures not listed (--all lists them)" if quiet else None,
    )


@breaker_app.command("reset")
def breaker_reset(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Option("--user", help="The user whose breakers to close.")
    ] = None,
    integration: Annotated[
        str, typer.Option(help="With --user: contacts, calendar or all.")
    ] = "all",
    every_pair: Annotated[
        bool,
        typer.Option("--all", help="Close every open or half-open breaker; zero every count."),
    ] = False,
    fleet: Annotated[
        bool, typer.Option("--fleet", help="Close every fleet breaker (per Google API).")
    ] = False,
) -> None:
    """Close a user's breakers (--all: every active one; --fleet: the fleet breakers, per Google
    API) and zero the failure counts.

    Example: syncctl breaker reset --user u1 --integration calendar
    """
    if sum((user is not None, every_pair, fleet)) != 1:
        raise users.BadInput("breaker reset: give one of --user X, --all or --fleet")
    state = app_state(ctx)
    from syncctl.fleet import reset_active_breakers, reset_breakers, reset_fleet_breakers

    if fleet:
        opened = reset_fleet_breakers(state.db)
        _output.say(f"closed {opened} open fleet breaker(s); their evidence is forgotten")
        return
    if every_pair:
        _output.say(f"reset {reset_active_breakers(state.db)} breaker(s)")
        return
    chosen = users.integrations_option(integration)
    users.require_user(state.db, user)
    enabled = [i for i in chosen if i in user_store.user_integrations(state.db.conn, user)]
    reset_breakers(state.db, user, enabled)
    _output.say(f"closed {len(enabled)} breaker(s) of {user}")
