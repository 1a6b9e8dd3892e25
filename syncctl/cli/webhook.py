"""`syncctl webhook`: receive Google Calendar push notifications (SPEC section 5)."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from syncctl.cli import _output
from syncctl.cli._context import app_state
from syncctl.config import Env

DEFAULT_PORT = 8086  # also syncctl.receiver.DEFAULT_PORT; kept here so --help loads no server

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
    ] = DEFAULT_PORT,
) -> None:
    """Receive Google's notifications and sync the notified calendars within seconds, until Ctrl-C.

    Each notification makes its calendar due at once; bursts for one user coalesce for
    webhook_coalesce_seconds (2 s), then one sync of only the notified calendars runs through
    the same pipeline, gates and per-pair lease as run-due. Put it behind the HTTPS address
    in SYNCCTL_WEBHOOK_URL (Google only posts to HTTPS). One line per request goes to stderr;
    GET /healthz answers 200.

    Example: syncctl webhook serve --port 8086
    """
    state = app_state(ctx)
    state.db  # noqa: B018 (the notified syncs read credentials: a missing or wrong key exits 2 now)
    state.close()
    _stop_on_signals()
    from syncctl import fleet, receiver  # loads the server and the Google stack

    fleet.tune_collector()

    def ready(server: receiver.Receiver) -> None:
        _output.note(f"webhook receiver listening at {server.url} (GET {receiver.HEALTH_PATH})")
        if not state.settings.webhook_url:
            _output.note(f"note: {Env.WEBHOOK_URL} is not set, so syncs open no watch channels")

    try:
        receiver.serve(state.settings, host, port, log_line=_output.note, on_ready=ready)
    except KeyboardInterrupt:
        _output.note("webhook receiver stopped")
    except receiver.ListenError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _stop_on_signals() -> None:
    # A backgrounded shell job inherits an ignored SIGINT; Ctrl-C and SIGTERM must both stop us.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
