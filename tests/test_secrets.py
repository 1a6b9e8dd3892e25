"""Secrets at rest: ciphertext in the database file, the key's sources, a wrong or missing key,
`secrets rotate` and `secrets encrypt` (for a database an earlier version wrote)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet
from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.config import Settings
from syncctl.engines.contacts import PERSON_FIELDS
from syncctl.fakegoogle import FakeGoogle
from syncctl.google import GoogleSession
from syncctl.secrets import Keyring, KeySource, SecretsError, forget_keys, parse_key
from syncctl.store import open_database
from syncctl.store import users as user_store
from syncctl.store.db import APPLICATION_ID, MIGRATIONS


class Fleet:
    """One database, one fake Google account u1, and the CLI run in process."""

    def __init__(self, tmp_path: Path, fake: FakeGoogle, monkeypatch) -> None:
        self.tmp_path = tmp_path
        self.fake = fake
        self.monkeypatch = monkeypatch
        self.db_path = tmp_path / "fleet.db"
        self.config_home = tmp_path / "config"
        self.key_file = self.config_home / "syncctl" / "secret.key"
        monkeypatch.setenv("SYNCCTL_DB", str(self.db_path))
        monkeypatch.setenv("SYNCCTL_GOOGLE_ENDPOINT", fake.base_url)
        monkeypatch.setenv("SYNCCTL_CONFIG", str(tmp_path / "none.toml"))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(self.config_home))
        (tmp_path / "none.toml").write_text("retry_max_attempts = 2\n")
        self.grant = fake.add_user("u1", contacts=2)
        self.grant_file = tmp_path / "u1.json"
        self.grant_file.write_text(json.dumps({**self.grant, "token": "at-given-by-file"}))

    def __call__(self, *args: str, key: str | None = None):
        if key is not None:
            self.monkeypatch.setenv("SYNCCTL_SECRET_KEY", key)
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    def without_env_key(self) -> None:
        self.monkeypatch.delenv("SYNCCTL_SECRET_KEY")

    def files(self) -> bytes:
        """The database file and its WAL, as bytes (what a stolen copy holds)."""
        wal = self.db_path.with_name(self.db_path.name + "-wal")
        return self.db_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    def fingerprint(self) -> str:
        return hashlib.sha256(self.files()).hexdigest()

    def credentials(self):
        db = open_database(self.db_path)
        try:
            return user_store.load_credentials(db.conn, "u1")
        finally:
            db.close()


@pytest.fixture
def fleet(tmp_path, fake_google, monkeypatch) -> Fleet:
    return Fleet(tmp_path, fake_google, monkeypatch)


def one_error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_database_file_and_its_wal_hold_no_secret_after_add_import_and_sync(fleet):
    assert fleet("user", "add", "u1", "--credentials", str(fleet.grant_file)).exit_code == 0
    lines = fleet.tmp_path / "users.jsonl"
    other = {**fleet.grant, "refresh_token": "rt-of-u2-from-import"}
    lines.write_text(json.dumps({"id": "u2", "credentials": other}) + "\n")
    assert fleet("user", "import", str(lines)).exit_code == 0
    secrets = [
        fleet.grant["client_secret"],
        fleet.grant["refresh_token"],
        "at-given-by-file",
        "rt-of-u2-from-import",
    ]
    assert [s for s in secrets if s.encode() in fleet.files()] == []
    assert fleet("sync", "--user", "u1").exit_code == 0
    refreshed = fleet.credentials().access_token  # the fake issued it during the sync
    assert refreshed.startswith("fake-access-")
    assert refreshed.encode() not in fleet.files()
    assert fleet.grant["refresh_token"].encode() not in fleet.files()


def test_stored_secrets_are_fernet_tokens_of_the_key(fleet, secret_key):
    fleet("user", "add", "u1", "--credentials", str(fleet.grant_file))
    conn = sqlite3.connect(fleet.db_path)
    row = conn.execute(
        "SELECT client_secret, refresh_token, access_token FROM credentials"
    ).fetchone()
    conn.close()
    fernet = Fernet(secret_key.encode())
    assert [fernet.decrypt(v.encode()).decode() for v in row] == [
        fleet.grant["client_secret"],
        fleet.grant["refresh_token"],
        "at-given-by-file",
    ]


@pytest.mark.parametrize(
    "command",
    [
        ("sync", "--user", "u1"),
        ("run-due",),
        ("health", "--check"),
        ("user", "list"),
        ("user", "add", "u2", "--credentials", "{grant}"),
        ("secrets", "rotate", "--new-key-file", "{new_key}"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_wrong_key_exits_2_with_one_line_and_changes_nothing(fleet, command):
    fleet("user", "add", "u1", "--credentials", str(fleet.grant_file))
    before = fleet.fingerprint()
    new_key = fleet.tmp_path / "new.key"
    args = [a.format(grant=fleet.grant_file, new_key=new_key) for a in command]
    result = fleet(*args, key=Fernet.generate_key().decode())
    assert result.exit_code == 2
    assert one_error_line(result) == (
        "syncctl: error: the secret key from SYNCCTL_SECRET_KEY does not open this database's"
        " secrets"
    )
    assert fleet.fingerprint() == before
    assert not new_key.exists()
    assert fleet.fake.request_count() == 0


def test_a_malformed_key_exits_2_naming_its_source(fleet):
    result = fleet("user", "add", "u1", "--credentials", str(fleet.grant_file), key="not-a-key")
    assert result.exit_code == 2
    assert one_error_line(result) == (
        "syncctl: error: SYNCCTL_SECRET_KEY does not hold a Fernet key (44 characters of"
        " URL-safe base64)"
    )
    assert not fleet.db_path.exists()


def test_without_any_key_the_first_user_add_generates_a_private_key_file(fleet):
    fleet.without_env_key()
    assert fleet("user", "add", "u1", "--credentials", str(fleet.grant_file)).exit_code == 0
    assert fleet.key_file.stat().st_mode & 0o777 == 0o600
    assert fleet.key_file.parent.stat().st_mode & 0o777 == 0o700
    key = fleet.key_file.read_text().strip()
    assert fleet.credentials().refresh_token == fleet.grant["refresh_token"]
    assert fleet("user", "add", "u1", "--credentials", str(fleet.grant_file)).exit_code == 0
    assert fleet.key_file.read_text().strip() == key  # generated once, then used
    assert fleet("sync", "--user", "u1").exit_code == 0


def test_a_lost_key_file_exits_2_with_one_line_and_is_not_regenerated(fleet):
    fleet.without_env_key()
    fleet("user", "add", "u1", "--credentials", str(fleet.grant_file))
    fleet.key_file.unlink()
    before = fleet.fingerprint()
    result = fleet("run-due")
    assert result.exit_code == 2
    assert one_error_line(result) == (
        f"syncctl: error: no secret key: SYNCCTL_SECRET_KEY is unset and {fleet.key_file} does"
        " not exist (restore the key from your backup; without it every user must reconnect)"
    )
    assert not fleet.key_file.exists()
    assert fleet.fingerprint() == before


def test_after_rotate_the_old_key_fails_with_one_line_and_the_new_one_syncs(fleet, secret_key):
    fleet("user", "add", "u1", "--credentials", str(fleet.grant_file))
    new_key_file = fleet.tmp_path / "new.key"
    rotated = fleet("secrets", "rotate", "--new-key-file", str(new_key_file))
    assert rotated.exit_code == 0, rotated.stderr
    assert " ".join(rotated.stdout.split()) == (
        f"re-encrypted the secrets of 1 user(s) with a new key generated in {new_key_file}"
    )
    assert new_key_file.stat().st_mode & 0o777 == 0o600
    new_key = new_key_file.read_text().strip()
    old = fleet("sync", "--user", "u1", key=secret_key)
    assert old.exit_code == 2
    assert one_error_line(old).startswith("syncctl: error: the secret key from")
    assert fleet("sync", "--user", "u1", key=new_key).exit_code == 0
    assert fleet.credentials().refresh_token == fleet.grant["refresh_token"]


def test_rotate_leaves_no_old_ciphertext_in_the_database_file_or_its_wal(fleet):
    fleet("user", "add", "u1", "--credentials", str(fleet.grant_file))
    conn = sqlite3.connect(fleet.db_path)
    old = conn.execute("SELECT client_secret, refresh_token, access_token FROM credentials")
    old_tokens = [value for value in old.fetchone()]
    conn.close()
    assert (
        fleet("secrets", "rotate", "--new-key-file", str(fleet.tmp_path / "n.key")).exit_code == 0
    )
    assert [t for t in old_tokens if t.encode() in fleet.files()] == []


def test_rotate_replaces_the_key_file_that_held_the_old_key(fleet):
    fleet.without_env_key()
    fleet("user", "add", "u1", "--credentials", str(fleet.grant_file))
    old_key = fleet.key_file.read_text().strip()
    new_key = Fernet.generate_key().decode()
    (fleet.tmp_path / "new.key").write_text(new_key + "\n")
    result = fleet("secrets", "rotate", "--new-key-file", str(fleet.tmp_path / "new.key"))
    assert result.exit_code == 0
    assert fleet.key_file.read_text().strip() == new_key
    assert fleet.key_file.stat().st_mode & 0o777 == 0o600
    assert fleet("sync", "--user", "u1").exit_code == 0
    assert fleet("sync", "--user", "u1", key=old_key).exit_code == 2


def test_rotate_to_the_current_key_is_refused(fleet, secret_key):
    fleet("user", "add", "u1", "--credentials", str(fleet.grant_file))
    same = fleet.tmp_path / "same.key"
    same.write_text(secret_key)
    result = fleet("secrets", "rotate", "--new-key-file", str(same))
    assert result.exit_code == 2
    assert one_error_line(result) == f"syncctl: error: {same} holds the current key; give a new one"


def plaintext_database(path: Path, grant: dict) -> None:
    """A database as syncctl wrote it before secrets at rest (schema version 2, plaintext)."""
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    stamp = "2026-11-01T00:00:00+00:00"
    conn.execute("INSERT INTO users VALUES ('u1', NULL, ?, ?)", [stamp, stamp])
    conn.execute("INSERT INTO user_integrations VALUES ('u1', 'google_contacts', ?)", [stamp])
    conn.execute(
        "INSERT INTO credentials VALUES ('u1', ?, ?, ?, 'old-plain-access', ?, '[]', ?)",
        [grant["client_id"], grant["client_secret"], grant["refresh_token"], stamp, stamp],
    )
    conn.execute("INSERT INTO token_health VALUES ('u1', 'google_contacts', 'unknown', NULL, NULL)")
    conn.execute(
        "INSERT INTO circuit_breaker_state (user_id, integration_type) VALUES"
        " ('u1', 'google_contacts')"
    )
    conn.execute(
        "INSERT INTO sync_schedule (user_id, integration_type, default_frequency_seconds,"
        " current_frequency_seconds, next_sync_at) VALUES ('u1', 'google_contacts', 3600, 3600, ?)",
        [stamp],
    )
    conn.commit()
    conn.close()


def test_secrets_encrypt_converts_a_database_of_an_earlier_version(fleet):
    plaintext_database(fleet.db_path, fleet.grant)
    assert fleet.grant["refresh_token"].encode() in fleet.files()
    refused = fleet("sync", "--user", "u1")
    assert refused.exit_code == 2
    assert one_error_line(refused) == (
        "syncctl: error: this database stores credentials in plaintext (written by an earlier"
        " syncctl); run `syncctl secrets encrypt` first"
    )
    result = fleet("secrets", "encrypt")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("encrypted the secrets of 1 user(s) with the key from")
    plain = [fleet.grant["client_secret"], fleet.grant["refresh_token"], "old-plain-access"]
    assert [s for s in plain if s.encode() in fleet.files()] == []
    assert fleet("sync", "--user", "u1").exit_code == 0
    again = fleet("secrets", "encrypt")
    assert (again.exit_code, again.stdout.split(" (")[0]) == (0, "secrets are already encrypted")


def test_secrets_encrypt_without_a_key_generates_the_key_file(fleet):
    plaintext_database(fleet.db_path, fleet.grant)
    fleet.without_env_key()
    assert fleet("secrets", "encrypt").exit_code == 0
    assert fleet.key_file.stat().st_mode & 0o777 == 0o600
    assert fleet.credentials().client_secret == fleet.grant["client_secret"]


def test_a_keyring_never_shows_its_key():
    key = Fernet.generate_key()
    keyring = Keyring([key], KeySource())
    assert key.decode() not in repr(keyring) and "hidden" in repr(keyring)


def test_a_token_of_another_key_is_a_secrets_error_naming_the_source_only(tmp_path):
    token = Keyring([Fernet.generate_key()], KeySource()).encrypt("s3cret")
    keyring = Keyring([Fernet.generate_key()], KeySource(tmp_path / "k"))
    with pytest.raises(SecretsError) as refused:
        keyring.decrypt(token)
    assert (
        str(refused.value)
        == f"the secret key from {tmp_path / 'k'} does not open this database's secrets"
    )


@pytest.mark.parametrize("text", ["", "short", "x" * 44, Fernet.generate_key().decode()[:-2]])
def test_parse_key_refuses_what_is_not_a_fernet_key(text):
    with pytest.raises(SecretsError):
        parse_key(text, KeySource())


def test_the_readme_quick_start_keeps_credential_files_out_of_the_checkout():
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    ignored = (root / ".gitignore").read_text().split()
    directories = [
        line.split("--credentials-dir", 1)[1].split()[0]
        for line in readme.splitlines()
        if line.startswith("    ") and "--credentials-dir" in line
    ]
    assert directories  # the quick start writes credential files somewhere
    for directory in directories:
        assert directory.startswith('"$') or directory.strip("./") + "/" in ignored
    assert "creds/" in ignored


def test_a_secret_a_keyring_opened_before_is_still_refused_by_another_key():
    # GIVEN a token the right keyring has opened (and so remembers)
    right = Keyring([Fernet.generate_key()], KeySource())
    token = right.encrypt("refresh-token-1")
    assert right.decrypt(token) == "refresh-token-1"

    # WHEN another key is asked for the same token, THEN it does not open it
    with pytest.raises(SecretsError):
        Keyring([Fernet.generate_key()], KeySource()).decrypt(token)
    # and the right keyring opens a new secret's token as the new secret
    assert right.decrypt(right.encrypt("refresh-token-2")) == "refresh-token-2"


def test_a_keyring_opens_a_token_it_encrypted_without_decrypting_it_again(monkeypatch):
    keyring = Keyring([Fernet.generate_key()], KeySource())
    token = keyring.encrypt("access-token-1")

    def refuse(*_):
        raise AssertionError("decrypted again")

    monkeypatch.setattr(MultiFernet, "decrypt", refuse)
    assert keyring.decrypt(token) == "access-token-1"


def test_an_attempt_with_a_live_access_token_never_opens_the_refresh_token_or_client_secret(
    fleet,
):
    assert fleet("user", "add", "u1", "--credentials", str(fleet.grant_file)).exit_code == 0
    assert fleet("sync", "--user", "u1").exit_code == 0  # refreshes: a live access token stored
    settings = Settings(google_endpoint=fleet.fake.base_url)
    grant = fleet.credentials()
    assert not grant.opened
    fleet.fake.reset_counts()

    with GoogleSession(grant, settings) as session:
        pages = session.list_connections(sync_token=None, person_fields=PERSON_FIELDS)
        people = [person for page in pages for person in page.items]
        assert len(people) == 2
        assert not grant.opened  # nothing read them: they are still ciphertext in memory
        session.refresh_token()  # the one reader: opened, and Google takes them

    assert grant.opened
    assert grant.refresh_token == fleet.grant["refresh_token"]
    assert grant.client_secret == fleet.grant["client_secret"]
    assert fleet.fake.counts() == {("u1", "people.connections.list"): 1, ("u1", "oauth.token"): 1}


def test_a_grant_without_an_access_token_is_opened_at_once_so_a_wrong_key_fails_before_google(
    fleet, monkeypatch
):
    grant_file = fleet.tmp_path / "no-access-token.json"
    grant_file.write_text(json.dumps(fleet.grant))
    assert fleet("user", "add", "u1", "--credentials", str(grant_file)).exit_code == 0
    assert fleet.credentials().opened

    monkeypatch.setenv("SYNCCTL_SECRET_KEY", Fernet.generate_key().decode())
    forget_keys()
    with pytest.raises(SecretsError):
        fleet.credentials()
