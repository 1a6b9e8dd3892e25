"""`syncctl user connect` end to end: the real command and google-auth-oauthlib against the fake
Google, with the test playing the browser (it opens the printed URL and follows the redirect)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from syncctl import users
from syncctl.cli import app
from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.fakegoogle import FakeGoogle
from syncctl.google.consent import ConsentDenied
from syncctl.model import Integration
from syncctl.store import open_database
from syncctl.store import users as user_store

CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"
CALENDAR = "https://www.googleapis.com/auth/calendar.readonly"
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Connected:
    code: int
    stdout: str
    stderr: str
    url: str | None
    page: str | None

    @property
    def query(self) -> dict[str, list[str]]:
        assert self.url is not None
        return parse_qs(urlsplit(self.url).query)


class Operator:
    """Runs syncctl commands on one database against the fake Google, and plays the browser."""

    def __init__(self, tmp_path: Path, fake: FakeGoogle) -> None:
        self.fake = fake
        self.db_path = tmp_path / "fleet.db"
        self.client_file = tmp_path / "client_secret.json"
        self.client_file.write_text(json.dumps(fake.client_secrets()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCCTL_")}
        env.update(
            SYNCCTL_DB=str(self.db_path),
            SYNCCTL_GOOGLE_ENDPOINT=fake.base_url,
            SYNCCTL_CONFIG=os.devnull,
            SYNCCTL_SECRET_KEY=os.environ["SYNCCTL_SECRET_KEY"],
            COLUMNS="200",
            NO_PROXY="127.0.0.1,localhost",
        )
        self.env = env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [sys.executable, "-m", "syncctl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def connect(self, *args: str, browse: bool = True) -> Connected:
        """`user connect ... --no-browser`; open the one URL it prints, as a browser would."""
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "syncctl", "user", "connect", *args, "--no-browser"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        first = process.stderr.readline()
        url = next((word for word in first.split() if word.startswith("http")), None)
        page = None
        if url is not None and browse:
            with _direct.open(url, timeout=30) as response:  # follows the 302 to loopback
                page = response.read().decode()
        stdout, rest = process.communicate(timeout=60)
        return Connected(process.returncode, stdout, first + rest, url, page)

    def secrets(self) -> list[str]:
        """The client secret and every stored user's refresh and access token, decrypted."""
        db = open_database(self.db_path)
        try:
            ids = [user_id for (user_id,) in db.conn.execute("SELECT user_id FROM credentials")]
            grants = [user_store.load_credentials(db.conn, user_id) for user_id in ids]
        finally:
            db.close()
        found = [self.fake.client_secrets()["installed"]["client_secret"]]
        for grant in grants:
            found += [grant.refresh_token, grant.access_token or ""]
        return [s for s in found if s]

    def secrets_in_files(self) -> list[str]:
        wal = self.db_path.with_name(self.db_path.name + "-wal")
        raw = self.db_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        return [s for s in self.secrets() if s.encode() in raw]

    def sql(self, query: str) -> list[tuple]:
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()


@pytest.fixture
def operator(tmp_path: Path, fake_google: FakeGoogle) -> Operator:
    fake_google.add_user("u1", contacts=3, calendars=1, events_per_calendar=2)
    fake_google.add_user("u2", contacts=2)
    return Operator(tmp_path, fake_google)


def test_connect_stores_a_working_grant_and_the_next_sync_succeeds(operator):
    connected = operator.connect("alice", "--client-secrets", str(operator.client_file))
    assert (connected.code, connected.stdout.strip()) == (0, "connected user alice")
    assert connected.page == "syncctl received Google's answer; you may close this window."
    # Read-only scopes, offline access with a consent prompt, PKCE, a loopback redirect.
    query = connected.query
    assert connected.url.startswith(operator.fake.base_url + "/o/oauth2/auth?")
    assert query["scope"] == [f"{CONTACTS} {CALENDAR}"]
    assert (query["access_type"], query["prompt"]) == (["offline"], ["consent"])
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert urlsplit(query["redirect_uri"][0]).hostname == "127.0.0.1"
    # The URL is the first line of stderr, one line, and nowhere else.
    lines = connected.stderr.splitlines()
    assert [line for line in lines if "/o/oauth2/auth" in line] == [lines[0]]
    assert lines[0] == f"Open this URL in a browser to connect alice: {connected.url}"
    assert "/o/oauth2/auth" not in connected.stdout
    # The grant is stored encrypted: neither the database file nor its WAL holds a secret.
    assert operator.secrets_in_files() == []
    sync = operator.run("sync", "--user", "alice", "--json")
    assert sync.returncode == 0, sync.stderr
    assert [a["result"] for a in json.loads(sync.stdout)["attempts"]] == ["success", "success"]
    assert operator.sql("SELECT count(*) FROM contacts WHERE user_id = 'alice'") == [(3,)]
    assert operator.secrets_in_files() == []
    assert [s for s in operator.secrets() if s in connected.stderr + sync.stdout] == []


def test_a_grant_without_a_refresh_token_exits_2_with_one_line_and_stores_nothing(operator):
    operator.fake.set_consent(refresh_token=False)
    connected = operator.connect("alice", "--client-secrets", str(operator.client_file))
    assert connected.code == 2
    assert connected.stderr.splitlines()[1:] == [
        "syncctl: error: Google returned no refresh token (offline access); remove syncctl's"
        " access at https://myaccount.google.com/permissions and connect again; nothing stored"
    ]
    assert operator.sql("SELECT count(*) FROM users") == [(0,)]
    assert operator.sql("SELECT count(*) FROM credentials") == [(0,)]


# -- in process: the same library calls, the browser played from a thread -------------------


class Browser:
    """Opens each announced URL from another thread (the loopback server answers only once
    the flow waits for it), following the redirect as a browser does."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.threads: list[threading.Thread] = []

    def announce(self, line: str) -> None:
        url = line.rsplit(" ", 1)[-1]
        self.urls.append(url)
        thread = threading.Thread(target=self._open, args=(url,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _open(self, url: str) -> None:
        with _direct.open(url, timeout=30) as response:
            response.read()

    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.urls[-1]).query)


@pytest.fixture
def connect(db, fake_google: FakeGoogle):
    fake_google.add_user("u1", contacts=3, calendars=1, events_per_calendar=2)
    fake_google.add_user("u2", contacts=2)
    settings = Settings(google_endpoint=fake_google.base_url, retry_max_attempts=2)
    browser = Browser()

    def run(user_id: str, **options) -> bool:
        try:
            return users.connect_user(
                db,
                settings,
                user_id,
                fake_google.client_secrets(),
                announce=browser.announce,
                clock=utcnow,
                open_browser=False,
                **options,
            )
        finally:
            for thread in browser.threads:
                thread.join(timeout=10)

    run.browser = browser  # type: ignore[attr-defined]
    return run


def stored(db) -> list[tuple]:
    return db.conn.execute("SELECT * FROM credentials").fetchall()


def test_a_grant_missing_a_requested_scope_is_bad_input_and_stores_nothing(
    connect, fake_google, db
):
    fake_google.set_consent(scopes=[CONTACTS])
    with pytest.raises(users.BadInput) as refused:
        connect("alice")
    assert str(refused.value) == (
        "Google granted no calendar.readonly access (the box was left unticked on the consent"
        " screen?); nothing stored"
    )
    assert db.conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_a_denied_consent_is_consent_denied_and_stores_nothing(connect, fake_google, db):
    fake_google.set_consent(deny=True)
    with pytest.raises(ConsentDenied):
        connect("alice")
    assert db.conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_a_denied_reconnect_keeps_the_old_grant(connect, fake_google, db):
    assert connect("alice") is True
    before = stored(db)
    fake_google.set_consent(deny=True)
    with pytest.raises(ConsentDenied):
        connect("alice")
    assert stored(db) == before


def test_connect_of_a_known_user_is_a_reconnect_with_a_fresh_refresh_token(connect, db):
    assert connect("alice") is True
    first = user_store.load_credentials(db.conn, "alice")
    db.conn.execute("UPDATE token_health SET status = 'revoked'")
    assert connect("alice") is False
    again = user_store.load_credentials(db.conn, "alice")
    assert again.refresh_token != first.refresh_token  # prompt=consent: Google sends a new one
    assert set(db.conn.execute("SELECT status FROM token_health")) == {("unknown",)}


def test_connect_with_one_integration_asks_only_its_scope(connect, db):
    connect("alice", integrations=(Integration.CALENDAR,))
    assert connect.browser.query()["scope"] == [CALENDAR]
    assert user_store.user_integrations(db.conn, "alice") == (Integration.CALENDAR,)
    assert user_store.load_credentials(db.conn, "alice").scopes == (CALENDAR,)


def test_the_email_is_the_login_hint_and_picks_the_account(connect, fake_google, db):
    connect("bob", email="u2@example.com")
    assert connect.browser.query()["login_hint"] == ["u2@example.com"]
    refresh_token = user_store.load_credentials(db.conn, "bob").refresh_token
    assert fake_google._state.refresh_grants[refresh_token].user_id == "u2"


def test_a_port_that_is_taken_is_bad_input(connect):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(users.BadInput) as refused:
            connect("alice", port=port)
    assert str(refused.value).startswith(f"cannot listen on 127.0.0.1:{port} for Google's")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not JSON (line 1)"),
        ('{"type": "authorized_user"}', "not an OAuth client JSON"),
        ('{"installed": {"client_id": "x"}}', "client field 'client_secret' is missing or empty"),
    ],
)
def test_a_bad_client_secrets_file_exits_2_before_any_browser(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    db_path = tmp_path / "fleet.db"
    result = CliRunner().invoke(
        app,
        ["--db", str(db_path), "user", "connect", "alice", "--client-secrets", str(bad)],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert not db_path.exists()


def test_a_wrong_key_exits_2_before_any_browser(tmp_path, monkeypatch, fake_google):
    db_path = tmp_path / "fleet.db"
    client = tmp_path / "client.json"
    client.write_text(json.dumps(fake_google.client_secrets()))
    monkeypatch.setenv("SYNCCTL_GOOGLE_ENDPOINT", fake_google.base_url)
    grant = tmp_path / "grant.json"
    grant.write_text(json.dumps(fake_google.add_user("u1")))
    runner = CliRunner()
    runner.invoke(app, ["--db", str(db_path), "user", "add", "u1", "--credentials", str(grant)])
    monkeypatch.setenv("SYNCCTL_SECRET_KEY", Fernet.generate_key().decode())
    result = runner.invoke(
        app,
        ["--db", str(db_path), "user", "connect", "u2", "--client-secrets", str(client)],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "syncctl: error: the secret key from SYNCCTL_SECRET_KEY does not open this database's"
        " secrets"
    ]
    assert fake_google.request_count(endpoint="oauth.authorize") == 0
