"""`syncctl webhook`: receive Google Calendar push notifications (SPEC section 5)."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from syncctl import webhooks
from syncctl.cli import _output
from syncctl.cli._context import app_state
from syncctl.config import Env

app = typer.Typer(help="Receive Google Calendar push notifications.", no_args_is_help=True)


@app.callback()
def webhook() -> None:
    """Receive Google Calendar push notifications."""


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")
    ] = webhooks.DEFAULT_PORT,
) -> None:
    """Receive Google's notifications and make the notified calendars due now, until Ctrl-C.

    Put it behind the HTTPS address in SYNCCTL_WEBHOOK_URL (Google only posts to HTTPS).
    One line per notification goes to stderr; GET /healthz answers 200.

    Example: syncctl webhook serve --port 8086
    """
    state = app_state(ctx)
    _stop_on_signals()

    def ready(server: webhooks.WebhookServer) -> None:
        _output.note(f"webhook receiver listening at {server.url} (GET {webhooks.HEALTH_PATH})")
        if not state.settings.webhook_url:
            _output.note(f"note: {Env.WEBHOOK_URL} is not set, so syncs open no watch channels")

    try:
        webhooks.serve(state.settings.db_path, host, port, log_line=_output.note, on_ready=ready)
    except KeyboardInterrupt:
        _output.note("webhook receiver stopped")
    except webhooks.ListenError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _stop_on_signals() -> None:
    # A backgrounded shell job inherits an ignored SIGINT; Ctrl-C and SIGTERM must both stop us.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
