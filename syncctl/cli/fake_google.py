"""`syncctl fake-google`: run the fake Google on loopback for demos and manual testing."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from syncctl.cli import _output
from syncctl.config import Env

app = typer.Typer(
    help="Run a fake Google (People, Calendar, OAuth) on loopback.", no_args_is_help=True
)


@app.callback()
def fake_google() -> None:
    """Run a fake Google (People, Calendar, OAuth) on loopback."""


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")
    ] = 8085,
    users: Annotated[
        int, typer.Option(min=0, max=10_000, help="Seed users u1..uN with sample data.")
    ] = 3,
    credentials_dir: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Write each user's authorized-user JSON here (0600)."),
    ] = None,
    latency: Annotated[
        float,
        typer.Option(min=0.0, max=60.0, help="Seconds to wait before answering each request."),
    ] = 0.0,
    seed: Annotated[
        int, typer.Option(min=0, max=2**63 - 1, help="Seed for the generated data.")
    ] = 0,
) -> None:
    """Serve a fake Google with a seeded fleet until Ctrl-C.

    Example: syncctl fake-google serve --users 5 --credentials-dir ./creds
    """
    _stop_on_signals()
    from syncctl.fakegoogle import FakeGoogle, seed_fleet, write_credentials

    fake = FakeGoogle(seed=seed)
    try:
        base_url = fake.start(host, port)
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    try:
        fake.set_latency(latency)
        fleet = seed_fleet(fake, users)
        _output.note(f"fake Google serving at {base_url} with {len(fleet)} user(s)")
        if credentials_dir is not None:
            for user_id, credentials in fleet.items():
                path = write_credentials(credentials_dir, user_id, credentials)
                _output.note(f"  syncctl user add {user_id} --credentials {path}")
        _output.note(f"control: POST {base_url}/_fake/users, GET {base_url}/_fake/counts")
        _output.note(f"export {Env.GOOGLE_ENDPOINT}={base_url}")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _output.note("fake Google stopped")
    finally:
        fake.stop()


def _stop_on_signals() -> None:
    # A backgrounded shell job inherits an ignored SIGINT; Ctrl-C and SIGTERM must both stop us.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
