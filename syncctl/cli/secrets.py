"""`syncctl secrets`: rotate the key that encrypts credentials, or encrypt an older database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from syncctl import secrets
from syncctl.cli import _output
from syncctl.cli._context import app_state
from syncctl.config import Env

app = typer.Typer(
    help="Manage the key that encrypts stored credentials (see README: back it up).",
    no_args_is_help=True,
)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    new_key_file: Annotated[
        Path,
        typer.Option(
            "--new-key-file",
            dir_okay=False,
            help="File with the new Fernet key; generated there (0600) when it does not exist.",
        ),
    ],
) -> None:
    """Re-encrypt every stored secret with a new key, in one transaction.

    The current key (SYNCCTL_SECRET_KEY, else the key file) must open the database. A key file
    that held it is replaced by the new key; with SYNCCTL_SECRET_KEY, set it to the new key.

    Example: syncctl secrets rotate --new-key-file ~/new-secret.key
    """
    done = secrets.rotate_secrets(app_state(ctx).database_unchecked(), new_key_file)
    if not done.stored_secrets:
        _output.say("no secrets are stored yet; nothing re-encrypted")
        return
    made = "a new key generated in" if done.generated else "the key in"
    _output.say(f"re-encrypted the secrets of {done.users} user(s) with {made} {new_key_file}")
    if done.installed_at is not None:
        _output.note(f"{done.installed_at} now holds the new key; the old key opens nothing")
    else:
        _output.note(
            f"set {Env.SECRET_KEY} to the key in {new_key_file}: the old one opens nothing"
        )
    _output.note("back up the new key: without it every user must reconnect")


@app.command("encrypt")
def encrypt(ctx: typer.Context) -> None:
    """Encrypt the credentials of a database written by an earlier syncctl (in plaintext).

    Uses SYNCCTL_SECRET_KEY, else the key file (generated, 0600, when there is none).

    Example: syncctl --db fleet.db secrets encrypt
    """
    users, keyring = secrets.encrypt_secrets(app_state(ctx).database_unchecked())
    if users is None:
        _output.say(f"secrets are already encrypted (the key from {keyring.source} opens them)")
        return
    _output.say(f"encrypted the secrets of {users} user(s) with the key from {keyring.source}")
    _output.note("back up the key: without it every user must reconnect")
