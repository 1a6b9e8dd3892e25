"""`syncctl run-due` and `syncctl sync`: the orchestrated pipeline from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from syncctl import users
from syncctl.cli import _output
from syncctl.cli._context import app_state
from syncctl.model import Result, SkipReason, Trigger
from syncctl.store import users as user_store

EXIT_FAILURE = 1
EXIT_SKIPPED = 4
MAX_LIMIT = 2**31 - 1  # SQLite's LIMIT takes a 64-bit integer; no fleet is near this
SKIP_HINTS = {
    SkipReason.INVALID_TOKEN: "invalid_token, the Google grant is revoked; reconnect with"
    " `syncctl user add {user} --credentials FILE`",
    SkipReason.CIRCUIT_OPEN: "circuit_open, the breaker opened after repeated failures; it"
    " lets one trial through after an hour, or run `syncctl breaker reset --user {user}`",
    SkipReason.MASS_DELETE_HELD: "mass_delete_held, {detail}; nothing was deleted. Apply with"
    " `syncctl sync --user {user} --integration {integration} --allow-mass-delete`, or"
    " re-fetch with `syncctl sync --user {user} --integration {integration} --full`",
}


def run_due_command(
    ctx: typer.Context,
    limit: Annotated[
        int | None, typer.Option(min=1, max=MAX_LIMIT, help="Run at most N due pairs.")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=1024, help="Pairs synced at once (default from settings: 8)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would run and why; change nothing.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Print the per-attempt table even when stdout is not a terminal."
        ),
    ] = False,
) -> None:
    """Run every due (user, integration) pair through the pipeline.

    On a terminal (or with --verbose) it prints a table of the attempts. Under cron (stdout
    not a terminal, no --json) it prints nothing unless something newly went wrong: then, on
    stderr, one summary line and a line per failed pair and per grant found revoked.

    Exit 0 when all ran or were skipped by gating, 1 when any sync failed. An overlapping
    run-due on the same database exits 0 (with a notice, except under cron).

    Example: syncctl run-due --concurrency 8
    """
    state = app_state(ctx)
    state.check_secrets()
    settings = state.settings.with_overrides(concurrency=concurrency)
    from syncctl import fleet  # loads the Google stack
    from syncctl.orchestrator import orchestrator

    fleet.tune_collector()
    with orchestrator(settings) as runner:
        if dry_run:
            _output.render_plan(fleet.plan_due(runner, limit=limit), json_output=json_output)
            return
        with _output.attempt_progress(enabled=not json_output) as progress:
            summary = fleet.run_due(
                runner, limit=limit, on_start=progress.start, on_attempt=progress.advance
            )
    _output.render_run_due(
        None if summary is None else summary.attempts,
        json_output=json_output,
        verbose=verbose,
        notes=() if summary is None else summary.notes,
    )
    if summary is not None and summary.failed:
        raise typer.Exit(EXIT_FAILURE)


def sync_command(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", help="The user to sync.")],
    integration: Annotated[
        str, typer.Option(help="contacts, calendar or all (the user's integrations).")
    ] = "all",
    full: Annotated[bool, typer.Option("--full", help="Ignore sync tokens: full resync.")] = False,
    allow_mass_delete: Annotated[
        bool,
        typer.Option(
            "--allow-mass-delete",
            help="Apply deletions the mass-delete guard would hold (or holds) for this user.",
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Sync one user now through the same pipeline; never changes the schedule.

    Exit 0 on success, 1 on failure, 4 when skipped by a gate or held by the mass-delete guard
    (the reason is printed). A held pair syncs again only with --allow-mass-delete (apply) or
    --full (re-fetch; held again if the deletions persist).

    Example: syncctl sync --user u1 --integration calendar
    """
    state = app_state(ctx)
    wanted = users.integrations_option(integration)
    users.require_user(state.db, user)
    enabled = user_store.user_integrations(state.db.conn, user)
    chosen = [i for i in wanted if i in enabled]
    if integration != "all" and len(chosen) < len(wanted):
        missing = next(i for i in wanted if i not in enabled)
        raise users.BadInput(f"user {user!r} has no {missing.cli_name} integration")
    from syncctl.leases import PairBusy
    from syncctl.orchestrator import orchestrator  # loads the Google stack

    with orchestrator(state.settings) as runner:
        try:
            records = [
                runner.attempt(
                    user, i, Trigger.MANUAL, full=full, allow_mass_delete=allow_mass_delete
                )
                for i in chosen
            ]
        except PairBusy as busy:
            _output.note(f"skipped: {busy}; try again when it is done")
            raise typer.Exit(EXIT_SKIPPED) from None
    _output.render_attempts(records, json_output=json_output, title=f"sync {user}")
    for record in records:
        if record.skip_reason is not None:
            hint = SKIP_HINTS[record.skip_reason].format(
                user=user,
                integration=record.integration_type.cli_name,
                detail=record.error_message,
            )
            _output.note(f"skipped: {user} {record.integration_type.cli_name}: {hint}")
    if any(r.result == Result.FAILURE for r in records):
        raise typer.Exit(EXIT_FAILURE)
    if any(r.result == Result.SKIPPED for r in records):
        raise typer.Exit(EXIT_SKIPPED)
