"""OAuth endpoints: the authorization endpoint `/o/oauth2/auth` (an auto-approving consent
screen), `/token` (authorization-code and refresh grants) and `/tokeninfo`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import timedelta
from urllib.parse import unquote, urlencode, urlsplit

from syncctl.fakegoogle.errors import Reply, oauth_error
from syncctl.fakegoogle.state import ApiRequest, FakeState
from syncctl.fakegoogle.tokens import (
    ACCESS_TOKEN_SECONDS,
    AccessToken,
    AuthorizationCode,
    RefreshGrant,
    new_secret,
)

CODE_LIFETIME = timedelta(minutes=10)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def authorize(state: FakeState, request: ApiRequest) -> Reply:
    """Google's consent screen, approved at once: redirect to the loopback `redirect_uri` with a
    code (or `error=access_denied`), as `state.consent` says."""
    if request.param("client_id") != state.client_id:
        raise oauth_error(401, "invalid_client", "The OAuth client was not found.")
    redirect_uri = request.param("redirect_uri") or ""
    target = urlsplit(redirect_uri)
    if target.scheme != "http" or target.netloc.rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
        # Google shows an error page (no redirect) for a redirect URI the client may not use.
        raise oauth_error(400, "redirect_uri_mismatch", "Only loopback redirects are allowed.")
    answer = {"state": request.param("state")} if request.param("state") else {}
    if request.param("response_type") != "code":
        return _redirect(redirect_uri, error="unsupported_response_type", **answer)
    requested = (request.param("scope") or "").split()
    if not requested:
        return _redirect(redirect_uri, error="invalid_scope", **answer)
    challenge = request.param("code_challenge")
    method = request.param("code_challenge_method") or "plain"
    if challenge is not None and method not in ("S256", "plain"):
        return _redirect(redirect_uri, error="invalid_request", **answer)
    with state.lock:
        consent = state.consent
        if consent.deny:
            return _redirect(redirect_uri, error="access_denied", **answer)
        user_id = _signed_in_user(state, consent.user_id, request.param("login_hint"))
        granted = [s for s in requested if consent.scopes is None or s in consent.scopes]
        if not granted:
            return _redirect(redirect_uri, error="access_denied", **answer)
        # Google returns a refresh token for offline access on the first consent, and on a
        # repeated one only when the consent screen was shown again (prompt=consent).
        offline = request.param("access_type") == "offline"
        shown = user_id not in state.consented or "consent" in (request.param("prompt") or "")
        state.consented.add(user_id)
        code = new_secret("fake-code")
        state.authorization_codes[code] = AuthorizationCode(
            user_id=user_id,
            redirect_uri=redirect_uri,
            scopes=frozenset(granted),
            code_challenge=challenge,
            code_challenge_method=method,
            refresh_token=offline and shown and consent.refresh_token,
            expires_at=state.now() + CODE_LIFETIME,
        )
    return _redirect(redirect_uri, **answer, code=code, scope=" ".join(granted))


def _signed_in_user(state: FakeState, chosen: str | None, login_hint: str | None) -> str:
    if chosen is not None:
        state.user(chosen)
        return chosen
    for user in state.users.values():
        if login_hint in (user.email, user.user_id):
            return user.user_id
    if not state.users:
        raise oauth_error(400, "invalid_request", "No account can sign in to the fake Google.")
    return next(iter(state.users))


def _redirect(redirect_uri: str, **params: str) -> Reply:
    joiner = "&" if "?" in redirect_uri else "?"
    return Reply(302, None, {"Location": redirect_uri + joiner + urlencode(params)})


def token(state: FakeState, request: ApiRequest) -> Reply:
    """Exchange an authorization code or a refresh token for an access token valid 3599 s by the
    injected clock."""
    form = {k: v[-1] for k, v in request.form.items()}
    grant_type = form.get("grant_type", "")
    if grant_type not in ("refresh_token", "authorization_code"):
        raise oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
    if _client_credentials(form, request) != (state.client_id, state.client_secret):
        raise oauth_error(401, "invalid_client", "Unauthorized")
    if grant_type == "authorization_code":
        return _exchange_code(state, form)
    with state.lock:
        grant = state.refresh_grants.get(form.get("refresh_token", ""))
        if grant is None:
            raise oauth_error(400, "invalid_grant", "Bad Request")
        if grant.revoked:
            raise oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        user = state.users[grant.user_id]
        scopes = frozenset(user.scopes if grant.scopes is None else grant.scopes)
        if "scope" in form:
            requested = frozenset(form["scope"].split())
            # Google refuses a refresh that asks for more than the user granted.
            if not requested <= scopes:
                raise oauth_error(400, "invalid_scope", "Bad Request")
            scopes = requested
        rotated = None
        if grant.user_id in state.rotating_users:
            # Rotation: the response carries a new refresh token and the old one stops working.
            grant.revoked = True
            rotated = new_secret("fake-refresh")
            state.refresh_grants[rotated] = RefreshGrant(grant.user_id, scopes=grant.scopes)
        access_token = new_secret("fake-access")
        state.access_tokens[access_token] = AccessToken(
            user_id=user.user_id,
            expires_at=state.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS),
            scopes=scopes,
        )
    body = {
        "access_token": access_token,
        "expires_in": ACCESS_TOKEN_SECONDS,
        "scope": " ".join(sorted(scopes)),
        "token_type": "Bearer",
    }
    if rotated:
        body["refresh_token"] = rotated
    return Reply(200, body)


def _client_credentials(form: dict[str, str], request: ApiRequest) -> tuple[str, str]:
    """The client id and secret from the form, or from HTTP Basic auth (RFC 6749 2.3.1)."""
    scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        client_id, _, client_secret = decoded.partition(":")
        return unquote(client_id), unquote(client_secret)
    return form.get("client_id", ""), form.get("client_secret", "")


def _exchange_code(state: FakeState, form: dict[str, str]) -> Reply:
    """The authorization-code grant: single-use code, same redirect URI, PKCE verified."""
    with state.lock:
        code = state.authorization_codes.get(form.get("code", ""))
        if code is None or code.used or state.now() >= code.expires_at:
            raise oauth_error(400, "invalid_grant", "Malformed auth code.")
        code.used = True  # a code is good for one exchange, whatever its outcome
        if form.get("redirect_uri") != code.redirect_uri:
            raise oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if code.code_challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                raise oauth_error(400, "invalid_grant", "Missing code verifier.")
            if not hmac.compare_digest(
                _challenge_of(verifier, code.code_challenge_method), code.code_challenge
            ):
                raise oauth_error(400, "invalid_grant", "Invalid code verifier.")
        access_token = new_secret("fake-access")
        state.access_tokens[access_token] = AccessToken(
            user_id=code.user_id,
            expires_at=state.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS),
            scopes=code.scopes,
        )
        body: dict[str, object] = {
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": " ".join(sorted(code.scopes)),
            "token_type": "Bearer",
        }
        if code.refresh_token:
            refresh_token = new_secret("fake-refresh")
            state.refresh_grants[refresh_token] = RefreshGrant(code.user_id, scopes=code.scopes)
            body["refresh_token"] = refresh_token
    return Reply(200, body)


def _challenge_of(verifier: str, method: str) -> str:
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def tokeninfo(state: FakeState, request: ApiRequest) -> Reply:
    """Describe a live access token; 400 invalid_token for unknown, expired or revoked ones."""
    value = request.param("access_token")
    if value is None and request.body:
        value = (request.form.get("access_token") or [""])[-1]
    with state.lock:
        access = state.access_tokens.get(value or "")
        now = state.now()
        if access is None or access.revoked or access.is_expired(now):
            raise oauth_error(400, "invalid_token", "Invalid Value")
        user = state.users[access.user_id]
        remaining = int((access.expires_at - now).total_seconds())
        return Reply(
            200,
            {
                "azp": state.client_id,
                "aud": state.client_id,
                "sub": user.subject,
                "scope": " ".join(sorted(access.scopes)),
                "exp": str(int(access.expires_at.timestamp())),
                "expires_in": str(remaining),
                "access_type": "offline",
            },
        )
