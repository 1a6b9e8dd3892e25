"""OAuth endpoints: `/token` (refresh grant only) and `/tokeninfo`."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs

from syncctl.fakegoogle.errors import Reply, oauth_error
from syncctl.fakegoogle.state import ApiRequest, FakeState
from syncctl.fakegoogle.tokens import ACCESS_TOKEN_SECONDS, AccessToken, RefreshGrant, new_secret


def token(state: FakeState, request: ApiRequest) -> Reply:
    """Exchange a refresh token for an access token valid 3599 s by the injected clock."""
    form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
    grant_type = form.get("grant_type", "")
    if grant_type != "refresh_token":
        raise oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
    if form.get("client_id") != state.client_id or form.get("client_secret") != state.client_secret:
        raise oauth_error(401, "invalid_client", "Unauthorized")
    with state.lock:
        grant = state.refresh_grants.get(form.get("refresh_token", ""))
        if grant is None:
            raise oauth_error(400, "invalid_grant", "Bad Request")
        if grant.revoked:
            raise oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        user = state.users[grant.user_id]
        scopes = frozenset(user.scopes)
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
            state.refresh_grants[rotated] = RefreshGrant(grant.user_id)
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


def tokeninfo(state: FakeState, request: ApiRequest) -> Reply:
    """Describe a live access token; 400 invalid_token for unknown, expired or revoked ones."""
    value = request.param("access_token")
    if value is None and request.body:
        value = (parse_qs(request.body.decode("utf-8", "replace")).get("access_token") or [""])[-1]
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
