"""The secret key that encrypts credentials at rest (Fernet), and where it comes from.

The key is `SYNCCTL_SECRET_KEY` when set, else the key file `$XDG_CONFIG_HOME/syncctl/secret.key`
(generated with mode 0600 the first time secrets are written and no key exists). Nothing here
touches the database: store/secrets.py keeps the check value that tells a wrong key from the right
one.
"""

from __future__ import annotations

import binascii
import functools
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from syncctl.config import Env

KEY_FILE_NAME = "secret.key"
# Secrets a keyring has opened, by ciphertext, kept in memory only (see Keyring.decrypt).
OPENED_SECRETS_MAX = 100_000


class SecretsError(Exception):
    """The secret key is missing, malformed, or not the one this database's secrets need."""


@dataclass(frozen=True)
class KeySource:
    """Where a key came from: the environment variable, or a key file (`path`)."""

    path: Path | None = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else Env.SECRET_KEY


class Keyring:
    """Fernet keys: the first encrypts, all decrypt (MultiFernet); `repr` never shows a key."""

    def __init__(self, keys: Sequence[bytes], source: KeySource) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._keys = tuple(keys)
        fernets = [Fernet(key) for key in self._keys]
        self._primary = fernets[0]  # MultiFernet encrypts with its first key: asked directly
        self._fernet = MultiFernet(fernets)
        self._opened: dict[str, str] = {}
        self.source = source

    def __repr__(self) -> str:
        return f"Keyring(source={str(self.source)!r}, keys=<hidden>)"

    @property
    def primary_key(self) -> bytes:
        """The key new secrets are encrypted with."""
        return self._keys[0]

    def encrypt(self, text: str) -> str:
        """Ciphertext (a Fernet token, ASCII) of a secret."""
        token = self._primary.encrypt(text.encode("utf-8")).decode("ascii")
        # A refreshed access token is stored and loaded again by the pair's next attempt: it
        # is remembered as if opened, so that load decrypts nothing (see decrypt).
        self._remember(token, text)
        return token

    def decrypt(self, token: str) -> str:
        """The secret a Fernet token holds; SecretsError when no key of this keyring opens it."""
        # Every attempt loads its user's grant: three Fernet decryptions (an HMAC and an AES
        # pass each) were a tenth of an attempt's CPU. A token opened once by this keyring is
        # remembered by its ciphertext, in this process's memory only (never logged or
        # written): a reconnect, a refreshed access token or a key rotation stores new
        # ciphertext (Fernet's IV is random), so a changed secret is never served stale, and
        # another key has its own Keyring and must open the token itself.
        secret = self._opened.get(token)
        if secret is not None:
            return secret
        try:
            secret = self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretsError(
                f"the secret key from {self.source} does not open this database's secrets"
            ) from exc
        self._remember(token, secret)
        return secret

    def _remember(self, token: str, secret: str) -> None:
        if len(self._opened) >= OPENED_SECRETS_MAX:
            self._opened.clear()  # bounded: a fleet's grants are opened again as they come
        self._opened[token] = secret

    def reencrypt(self, token: str, old: Keyring) -> str:
        """A token of `old`'s key encrypted again with this keyring's key (MultiFernet.rotate)."""
        rotating = MultiFernet([Fernet(self.primary_key), *(Fernet(k) for k in old._keys)])
        try:
            return rotating.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretsError(
                f"the secret key from {old.source} does not open this database's secrets"
            ) from exc


def key_file_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/syncctl/secret.key`, falling back to `~/.config`."""
    env = os.environ if env is None else env
    return _key_file_path(env.get("XDG_CONFIG_HOME") or None, os.environ.get("HOME"))


@functools.lru_cache(maxsize=16)
def _key_file_path(config_home: str | None, home: str | None) -> Path:
    # Every credential load asks for the key file: Path.home() is looked up once per HOME.
    del home  # part of the cache key only: Path.home() reads it
    return Path(config_home or str(Path.home() / ".config")) / "syncctl" / KEY_FILE_NAME


def parse_key(text: str, source: KeySource) -> bytes:
    """A Fernet key (44 characters of URL-safe base64) from text; SecretsError names the source."""
    key = text.strip().encode("ascii", "replace")
    try:
        Fernet(key)
    except (ValueError, binascii.Error) as exc:
        raise SecretsError(
            f"{source} does not hold a Fernet key (44 characters of URL-safe base64)"
        ) from exc
    return key


def read_key_file(path: Path) -> bytes:
    """The key in a key file; SecretsError when it is missing, unreadable or not a key."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise SecretsError(f"secret key file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretsError(f"secret key file {path} cannot be read") from exc
    return parse_key(text, KeySource(path))


def write_key_file(path: Path, key: bytes, *, replace: bool = False) -> None:
    """Write a key file with mode 0600 (its directory 0700 if new).

    Without `replace` an existing file is never overwritten (FileExistsError), so two processes
    that generate a key at once end up sharing the first one; with `replace` the new file takes
    the old one's place atomically.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not replace:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key + b"\n")
        return
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret.key.")
    try:
        with os.fdopen(descriptor, "wb") as handle:  # mkstemp creates it 0600
            handle.write(key + b"\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def current_keyring(env: Mapping[str, str] | None = None, *, create: bool = False) -> Keyring:
    """The key from `SYNCCTL_SECRET_KEY`, else from the key file; with `create`, a missing key
    file is generated (0600). SecretsError when there is no usable key."""
    env = os.environ if env is None else env
    value = env.get(Env.SECRET_KEY)
    if value:
        return _env_keyring(value)
    path = key_file_path(env)
    if create and not path.exists():
        try:
            write_key_file(path, Fernet.generate_key())
        except FileExistsError:
            pass  # another process generated it first: use theirs
        except OSError as exc:
            raise SecretsError(f"cannot create the secret key file {path}: {exc.strerror}") from exc
    try:
        content = _key_file_content(path)
    except FileNotFoundError:
        raise SecretsError(
            f"no secret key: {Env.SECRET_KEY} is unset and {path} does not exist"
            " (restore the key from your backup; without it every user must reconnect)"
        ) from None
    except OSError as exc:
        raise SecretsError(f"secret key file {path} cannot be read") from exc
    return _file_keyring(str(path), content)


# The key file's bytes as last read, by path, with the stat they were read under.
_KEY_FILE_READS: dict[str, tuple[tuple[int, ...], bytes]] = {}


def _key_file_content(path: Path) -> bytes:
    """The key file's bytes, read again whenever its stat changes (device, inode, size, mtime,
    ctime: a replaced, edited, moved or re-permissioned file): every credential load asks, and
    a stat is one system call (one GIL hand-off) where open, read and close are five."""
    info = os.stat(path)
    stamp = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    known = _KEY_FILE_READS.get(str(path))
    if known is not None and known[0] == stamp:
        return known[1]
    with open(path, "rb") as handle:
        content = handle.read()
    _KEY_FILE_READS[str(path)] = (stamp, content)
    return content


@functools.lru_cache(maxsize=16)
def _file_keyring(path: str, content: bytes) -> Keyring:
    # Every credential load asks for the keyring: the key file is looked at each time (so a
    # rotated or edited key takes effect at once), the Fernet keys are built once per content.
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SecretsError(f"secret key file {path} cannot be read") from exc
    source = KeySource(Path(path))
    return Keyring([parse_key(text, source)], source)


@functools.lru_cache(maxsize=16)
def _env_keyring(value: str) -> Keyring:
    source = KeySource()
    return Keyring([parse_key(value, source)], source)


def forget_keys() -> None:
    """Forget the keyrings built so far and every secret they opened, as a new process would
    start (benchmarks/bench_fleet.py times each run-due as cron starts one)."""
    _file_keyring.cache_clear()
    _env_keyring.cache_clear()
    _KEY_FILE_READS.clear()


def configured_keyring(env: Mapping[str, str] | None = None) -> Keyring | None:
    """The configured key (environment or key file), or None when there is none; SecretsError
    when it is malformed or unreadable."""
    env = os.environ if env is None else env
    if not env.get(Env.SECRET_KEY) and not key_file_path(env).exists():
        return None
    return current_keyring(env)


def new_key_from_file(path: Path) -> tuple[bytes, bool]:
    """The key in `path`, or a new one written there (0600) when the file does not exist;
    returns (key, generated)."""
    if path.exists():
        return read_key_file(path), False
    key = Fernet.generate_key()
    try:
        write_key_file(path, key)
    except OSError as exc:
        raise SecretsError(f"cannot write the new key file {path}: {exc.strerror}") from exc
    return key, True


@contextmanager
def throwaway_key() -> Iterator[None]:
    """A one-off key in SYNCCTL_SECRET_KEY while a database that is deleted afterwards is used
    (the demo, the simulator), so that no key file is left behind for it."""
    previous = os.environ.get(Env.SECRET_KEY)
    os.environ[Env.SECRET_KEY] = Fernet.generate_key().decode("ascii")
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(Env.SECRET_KEY, None)
        else:
            os.environ[Env.SECRET_KEY] = previous


@dataclass(frozen=True)
class Rotation:
    """What `secrets rotate` did: users re-encrypted, and where the new key is."""

    users: int
    new_key_file: Path
    generated: bool  # the new key was generated into new_key_file
    installed_at: Path | None  # the key file that now holds the new key, if one was replaced
    stored_secrets: bool = True  # False: the database had no secrets, nothing was done


def rotate_secrets(db: sqlite_utils.Database, new_key_file: Path) -> Rotation:
    """Re-encrypt every secret with the key in `new_key_file` (generated there when missing) in
    one transaction; a key file that held the old key then holds the new one.

    SecretsError, and nothing changed, when the current key is missing or wrong.
    """
    from syncctl.store import secrets as secret_store  # the store imports this module

    state = secret_store.secrets_state(db.conn)
    if state == secret_store.SecretsState.PLAINTEXT:
        raise secret_store.plaintext_error()
    if state == secret_store.SecretsState.EMPTY:
        return Rotation(0, new_key_file, False, None, stored_secrets=False)
    old = current_keyring()
    secret_store.check_key(db.conn, old)
    # The new key is on disk before the transaction commits: a database must never be
    # encrypted with a key that exists nowhere.
    key, generated = new_key_from_file(new_key_file)
    if key == old.primary_key:
        raise SecretsError(f"{new_key_file} holds the current key; give a new one")
    try:
        users = secret_store.rotate_key(db, old, Keyring([key], KeySource(new_key_file)))
    except BaseException:
        if generated:
            new_key_file.unlink(missing_ok=True)
        raise
    installed = None
    if old.source.path is not None:
        try:
            write_key_file(old.source.path, key, replace=True)
        except OSError as exc:
            raise SecretsError(
                f"the secrets now need the key in {new_key_file}, but {old.source.path} could"
                f" not be replaced ({exc.strerror}): copy the new key there"
            ) from exc
        installed = old.source.path
    return Rotation(users, new_key_file, generated, installed)


def encrypt_secrets(db: sqlite_utils.Database) -> tuple[int | None, Keyring]:
    """Encrypt a database whose credentials an earlier version stored in plaintext, with the
    current key (the key file is generated if there is no key); returns (users encrypted or
    None when they already were, the keyring used)."""
    from syncctl.store import secrets as secret_store  # the store imports this module

    encrypted = secret_store.secrets_state(db.conn) == secret_store.SecretsState.ENCRYPTED
    keyring = current_keyring(create=not encrypted)
    return secret_store.encrypt_plaintext(db, keyring), keyring
