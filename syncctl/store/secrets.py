"""Secrets at rest: the key check value, and re-encrypting every credential in one transaction.

The credentials columns `client_secret`, `refresh_token` and `access_token` hold Fernet tokens.
`secret_key_check` holds one more token, of a known text, written with the first secret: it
tells a wrong key from the right one before anything is read or written, and marks a database
whose secrets are encrypted (a database from an earlier version has credentials but no check).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

import sqlite_utils

from syncctl import secrets
from syncctl.store.db import transaction

KEY_CHECK_TEXT = "syncctl secret key check v1"


class SecretsState(StrEnum):
    """What a database's credentials are: none yet, encrypted, or plaintext (an earlier version)."""

    EMPTY = "empty"
    ENCRYPTED = "encrypted"
    PLAINTEXT = "plaintext"


def secrets_state(conn: sqlite3.Connection) -> SecretsState:
    """Whether the database has encrypted secrets, plaintext ones, or none."""
    if conn.execute("SELECT 1 FROM secret_key_check").fetchone() is not None:
        return SecretsState.ENCRYPTED
    if conn.execute("SELECT 1 FROM credentials LIMIT 1").fetchone() is not None:
        return SecretsState.PLAINTEXT
    return SecretsState.EMPTY


def plaintext_error() -> secrets.SecretsError:
    """The refusal for a database whose credentials an earlier syncctl stored in plaintext."""
    return secrets.SecretsError(
        "this database stores credentials in plaintext (written by an earlier syncctl);"
        " run `syncctl secrets encrypt` first"
    )


def check_key(conn: sqlite3.Connection, keyring: secrets.Keyring) -> None:
    """SecretsError unless the keyring opens the database's key check (none yet: passes)."""
    check = _key_check(conn)
    if check is not None:
        _verify_key_check(keyring, check)


def _key_check(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT token FROM secret_key_check").fetchone()
    return None if row is None else str(row[0])


def _verify_key_check(keyring: secrets.Keyring, check: str) -> None:
    if keyring.decrypt(check) != KEY_CHECK_TEXT:
        raise secrets.SecretsError(f"the secret key from {keyring.source} is not this database's")


def require_key(conn: sqlite3.Connection) -> secrets.Keyring | None:
    """The current key, checked against the database, or None when it holds no secrets yet.

    SecretsError for a missing or wrong key, or for plaintext credentials.
    """
    state = secrets_state(conn)
    if state == SecretsState.PLAINTEXT:
        raise plaintext_error()
    if state == SecretsState.EMPTY:
        return None
    keyring = secrets.current_keyring()
    check_key(conn, keyring)
    return keyring


def writing_keyring(conn: sqlite3.Connection) -> secrets.Keyring:
    """The key to encrypt new secrets with (in the caller's transaction): checked against the
    database, or for a database without secrets generated if need be and recorded."""
    # The key check is read once for both questions (is it encrypted, is this the key): every
    # refreshed access token is saved through here.
    check = _key_check(conn)
    if check is None and secrets_state(conn) == SecretsState.PLAINTEXT:
        raise plaintext_error()
    keyring = secrets.current_keyring(create=check is None)
    if check is None:
        _save_key_check(conn, keyring)
    else:
        _verify_key_check(keyring, check)
    return keyring


# A column to read with the secrets: true when the database's secrets are encrypted (it has a
# key check), saving reading_keyring a statement of its own.
ENCRYPTED_SQL = "EXISTS (SELECT 1 FROM secret_key_check)"


def reading_keyring(conn: sqlite3.Connection, *, encrypted: bool = False) -> secrets.Keyring:
    """The key to decrypt stored secrets with; each decryption checks it. `encrypted`: the
    ENCRYPTED_SQL column, read in the same statement as the secrets."""
    if not encrypted and secrets_state(conn) == SecretsState.PLAINTEXT:
        raise plaintext_error()
    return secrets.current_keyring()


def _save_key_check(conn: sqlite3.Connection, keyring: secrets.Keyring) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO secret_key_check (id, token) VALUES (1, ?)",
        [keyring.encrypt(KEY_CHECK_TEXT)],
    )


def rotate_key(db: sqlite_utils.Database, old: secrets.Keyring, new: secrets.Keyring) -> int:
    """Re-encrypt every secret and the key check with `new` in one transaction; returns how many
    users' credentials were re-encrypted. SecretsError if `old` is not the database's key."""
    with _erasing_old_pages(db), transaction(db) as conn:
        state = secrets_state(conn)
        if state == SecretsState.PLAINTEXT:
            raise plaintext_error()
        check_key(conn, old)
        users = _rewrite_secrets(conn, lambda value: new.reencrypt(value, old))
        _save_key_check(conn, new)
    return users


def encrypt_plaintext(db: sqlite_utils.Database, keyring: secrets.Keyring) -> int | None:
    """Encrypt the plaintext credentials of a database from an earlier version, in one
    transaction; returns how many users' credentials, or None when they already were."""
    with _erasing_old_pages(db), transaction(db) as conn:
        state = secrets_state(conn)
        if state == SecretsState.ENCRYPTED:
            check_key(conn, keyring)
            return None
        users = _rewrite_secrets(conn, keyring.encrypt)
        _save_key_check(conn, keyring)
    return users


def _rewrite_secrets(conn: sqlite3.Connection, rewrite: Callable[[str], str]) -> int:
    """Pass every stored secret through `rewrite` (inside the caller's transaction); returns
    how many users' credentials."""
    rows = conn.execute(
        "SELECT user_id, client_secret, refresh_token, access_token FROM credentials"
    ).fetchall()
    conn.executemany(
        "UPDATE credentials SET client_secret = ?, refresh_token = ?, access_token = ?"
        " WHERE user_id = ?",
        [
            (*(None if v is None else rewrite(v) for v in values), user_id)
            for user_id, *values in rows
        ],
    )
    return len(rows)


@contextmanager
def _erasing_old_pages(db: sqlite_utils.Database) -> Iterator[None]:
    """Overwrite what replaced values occupied (secure_delete); after the transaction, copy the
    WAL into the database and truncate it, so neither file keeps the old bytes."""
    previous = db.conn.execute("PRAGMA secure_delete").fetchone()[0]
    db.conn.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        db.conn.execute(f"PRAGMA secure_delete = {int(previous)}")
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
