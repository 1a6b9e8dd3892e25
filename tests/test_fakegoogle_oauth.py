"""The fake Google's consent screen (`/o/oauth2/auth`) and authorization-code exchange, on the
wire: redirects, single-use codes, PKCE, client authentication, and the consent controls."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from syncctl.fakegoogle import FakeGoogle

CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"
CALENDAR = "https://www.googleapis.com/auth/calendar.readonly"
REDIRECT = "http://127.0.0.1:9/"
VERIFIER = "v" * 64
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")
)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def authorize(fake: FakeGoogle, **overrides: str) -> tuple[int, dict[str, str]]:
    """GET the consent screen; (status, query of the redirect Location, or the error body)."""
    params = {
        "response_type": "code",
        "client_id": fake.client_id,
        "redirect_uri": REDIRECT,
        "scope": f"{CONTACTS} {CALENDAR}",
        "state": "st-1",
        "access_type": "offline",
        "prompt": "consent",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    } | overrides
    params = {k: v for k, v in params.items() if v is not None}
    try:
        _opener.open(f"{fake.base_url}/o/oauth2/auth?{urlencode(params)}", timeout=10)
    except urllib.error.HTTPError as error:
        if error.code != 302:
            return error.code, json.loads(error.read())
        location = error.headers["Location"]
        assert location.startswith(REDIRECT)
        return 302, {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}
    raise AssertionError("the consent screen answered without a redirect")


def exchange(fake: FakeGoogle, auth_code: str, *, basic: bool = False, **overrides: str | None):
    secret = fake.client_secrets()["installed"]["client_secret"]
    form = {
        "grant_type": "authorization_code",
        "code": auth_code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic:
        pair = base64.b64encode(f"{fake.client_id}:{secret}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    else:
        form |= {"client_id": fake.client_id, "client_secret": secret}
    form = {k: v for k, v in (form | overrides).items() if v is not None}
    request = urllib.request.Request(  # noqa: S310 (the fake on loopback)
        f"{fake.base_url}/token", data=urlencode(form).encode(), headers=headers, method="POST"
    )
    try:
        with _opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def fake(fake_google: FakeGoogle) -> FakeGoogle:
    fake_google.add_user("u1")
    fake_google.add_user("u2")
    return fake_google


def test_consent_redirects_with_code_state_and_granted_scopes(fake):
    status, answer = authorize(fake)
    assert status == 302
    assert (answer["state"], answer["scope"]) == ("st-1", f"{CONTACTS} {CALENDAR}")
    assert answer["code"].startswith("fake-code-")


def test_the_code_exchange_returns_tokens_that_work_for_the_signed_in_user(fake):
    _, answer = authorize(fake, login_hint="u2@example.com")
    status, body = exchange(fake, answer["code"])
    assert status == 200
    assert set(body) == {"access_token", "expires_in", "scope", "token_type", "refresh_token"}
    assert body["scope"] == f"{CALENDAR} {CONTACTS}"
    assert fake._state.access_tokens[body["access_token"]].user_id == "u2"
    assert fake._state.refresh_grants[body["refresh_token"]].scopes == {CONTACTS, CALENDAR}


def test_client_credentials_may_come_by_http_basic_auth(fake):
    _, answer = authorize(fake)
    assert exchange(fake, answer["code"], basic=True)[0] == 200


def test_a_wrong_code_verifier_is_invalid_grant(fake):
    _, answer = authorize(fake)
    assert exchange(fake, answer["code"], code_verifier="w" * 64) == (
        400,
        {"error": "invalid_grant", "error_description": "Invalid code verifier."},
    )


def test_a_missing_code_verifier_is_invalid_grant(fake):
    _, answer = authorize(fake)
    assert exchange(fake, answer["code"], code_verifier=None)[1]["error"] == "invalid_grant"


def test_a_code_works_once(fake):
    _, answer = authorize(fake)
    assert exchange(fake, answer["code"])[0] == 200
    assert exchange(fake, answer["code"]) == (
        400,
        {"error": "invalid_grant", "error_description": "Malformed auth code."},
    )


def test_the_exchange_needs_the_same_redirect_uri(fake):
    _, answer = authorize(fake)
    status, body = exchange(fake, answer["code"], redirect_uri="http://127.0.0.1:10/")
    assert (status, body["error"]) == (400, "redirect_uri_mismatch")


def test_a_wrong_client_secret_is_invalid_client(fake):
    _, answer = authorize(fake)
    status, body = exchange(fake, answer["code"], client_secret="nope")
    assert (status, body["error"]) == (401, "invalid_client")


def test_a_redirect_off_loopback_is_refused_without_a_redirect(fake):
    status, body = authorize(fake, redirect_uri="https://attacker.example/cb")
    assert (status, body["error"]) == (400, "redirect_uri_mismatch")


def test_an_unknown_client_is_refused(fake):
    assert authorize(fake, client_id="other.apps")[0] == 401


def test_a_repeated_consent_without_prompt_returns_no_refresh_token(fake):
    # u1 approved the client when it was created: only prompt=consent brings a new token.
    _, answer = authorize(fake, prompt=None)
    assert "refresh_token" not in exchange(fake, answer["code"])[1]
    _, answer = authorize(fake, prompt="consent")
    assert "refresh_token" in exchange(fake, answer["code"])[1]


def test_online_access_returns_no_refresh_token(fake):
    _, answer = authorize(fake, access_type="online")
    assert "refresh_token" not in exchange(fake, answer["code"])[1]


def test_deny_redirects_with_access_denied(fake):
    fake.set_consent(deny=True)
    assert authorize(fake) == (302, {"error": "access_denied", "state": "st-1"})


def test_fewer_scopes_are_granted_when_told(fake):
    fake.set_consent(scopes=[CONTACTS])
    _, answer = authorize(fake)
    assert answer["scope"] == CONTACTS
    _, body = exchange(fake, answer["code"])
    assert body["scope"] == CONTACTS


def test_no_refresh_token_when_told(fake):
    fake.set_consent(refresh_token=False)
    _, answer = authorize(fake)
    assert "refresh_token" not in exchange(fake, answer["code"])[1]


def test_the_consent_controls_over_http(fake):
    request = urllib.request.Request(  # noqa: S310
        f"{fake.base_url}/_fake/consent",
        data=json.dumps({"deny": True}).encode(),
        method="POST",
    )
    with _opener.open(request, timeout=10) as response:
        assert response.status == 200
    assert authorize(fake)[1]["error"] == "access_denied"
    bad = urllib.request.Request(  # noqa: S310
        f"{fake.base_url}/_fake/consent", data=b'{"scopes": "x"}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        _opener.open(bad, timeout=10)
    assert refused.value.code == 400


def test_a_refresh_of_a_consented_grant_keeps_its_scopes(fake):
    fake.set_consent(scopes=[CONTACTS])
    _, answer = authorize(fake)
    refresh_token = exchange(fake, answer["code"])[1]["refresh_token"]
    status, body = exchange(
        fake, "", grant_type="refresh_token", refresh_token=refresh_token, code=None
    )
    assert (status, body["scope"]) == (200, CONTACTS)
