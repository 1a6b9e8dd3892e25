"""Google's installed-app OAuth flow for `user connect` (google-auth-oauthlib), on loopback.

Read-only scopes, offline access, a consent prompt (so a reconnect gets a fresh refresh token)
and PKCE; the redirect lands on 127.0.0.1. See GOOGLE_API_NOTES "the authorization flow".
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from syncctl import clock
from syncctl.config import Settings
from syncctl.model import Integration, UserCredentials

SCOPE = "https://www.googleapis.com/auth/"
READONLY_SCOPES = {
    Integration.CONTACTS: SCOPE + "contacts.readonly",
    Integration.CALENDAR: SCOPE + "calendar.readonly",
}
LOOPBACK_HOST = "127.0.0.1"
WAIT_SECONDS = 600  # how long the loopback server waits for the browser to come back
BROWSER_PAGE = "syncctl received Google's answer; you may close this window."
PROMPT = "Open this URL in a browser to connect {user}: {{url}}"
# requests-oauthlib logs the token request's body and Google's answer (client secret, code,
# tokens) at DEBUG: those loggers never go below WARNING, whatever logging is configured.
QUIET_LOGGERS = ("requests_oauthlib", "oauthlib")


class ConsentError(Exception):
    """The authorization flow ended without a grant (nothing is stored)."""


class ConsentDenied(ConsentError):
    """The user (or Google) refused the consent."""


class IncompleteGrant(ConsentError):
    """Google's grant lacks the refresh token or a requested scope."""


class ListenError(ConsentError):
    """The loopback port for Google's redirect cannot be listened on."""


def scopes_for(integrations: Sequence[Integration]) -> list[str]:
    """The read-only scopes the chosen integrations need."""
    return [READONLY_SCOPES[i] for i in integrations]


def client_config_for(client_config: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The client JSON with its endpoints pointed at SYNCCTL_GOOGLE_ENDPOINT when that is set."""
    kind = "installed" if "installed" in client_config else "web"
    section = dict(client_config[kind])
    if settings.google_endpoint:
        base = settings.google_endpoint.rstrip("/")
        section["auth_uri"] = base + "/o/oauth2/auth"
        section["token_uri"] = base + "/token"
    return {kind: section}


def run_consent(
    client_config: Mapping[str, Any],
    integrations: Sequence[Integration],
    settings: Settings,
    *,
    user_id: str,
    port: int = 0,
    open_browser: bool = True,
    login_hint: str | None = None,
    announce: Callable[[str], None],
    timeout_seconds: float = WAIT_SECONDS,
) -> UserCredentials:
    """Run the consent in the user's browser and return the grant; ConsentError otherwise.

    `announce` receives the one line with the authorization URL.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow, WSGITimeoutError
    from oauthlib.oauth2.rfc6749 import errors as oauth_errors
    from requests import RequestException

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    config = client_config_for(client_config, settings)
    wanted = scopes_for(integrations)
    flow = InstalledAppFlow.from_client_config(config, scopes=wanted)
    extra = {"login_hint": login_hint} if login_hint else {}
    token: Mapping[str, Any]
    try:
        with _plain_http_if_local(settings), contextlib.redirect_stdout(_Lines(announce)):
            # The library prints its prompt on stdout: here it becomes the announced line.
            flow.run_local_server(
                host=LOOPBACK_HOST,
                port=port,
                open_browser=open_browser and _browser_available(),
                authorization_prompt_message=PROMPT.format(user=user_id),
                success_message=BROWSER_PAGE,
                timeout_seconds=timeout_seconds,
                prompt="consent",
                access_type="offline",
                **extra,
            )
        token = flow.oauth2session.token
    except Warning as changed:  # oauthlib: Google granted other scopes than asked
        token = getattr(changed, "token", {})
    except WSGITimeoutError as exc:
        raise ConsentError(
            f"no answer from the browser within {int(timeout_seconds)} s; nothing stored"
        ) from exc
    except oauth_errors.AccessDeniedError as exc:
        raise ConsentDenied(
            "the consent was denied at Google (access_denied); nothing stored"
        ) from exc
    except oauth_errors.OAuth2Error as exc:
        raise ConsentError(
            f"Google refused the authorization ({exc.error}); nothing stored"
        ) from exc
    except RequestException as exc:
        raise ConsentError(
            f"cannot reach Google's token endpoint ({type(exc).__name__}); nothing stored"
        ) from exc
    except OSError as exc:
        raise ListenError(
            f"cannot listen on {LOOPBACK_HOST}:{port} for Google's redirect ({exc.strerror})"
        ) from exc
    return _grant(token, config, wanted)


def _grant(
    token: Mapping[str, Any], config: Mapping[str, Any], wanted: list[str]
) -> UserCredentials:
    section = next(iter(config.values()))
    granted = token.get("scope") or []
    granted = set(granted.split() if isinstance(granted, str) else granted)
    missing = [scope for scope in wanted if scope not in granted]
    if missing:
        raise IncompleteGrant(
            f"Google granted no {', '.join(s.removeprefix(SCOPE) for s in missing)} access"
            " (the box was left unticked on the consent screen?); nothing stored"
        )
    if not token.get("refresh_token"):
        raise IncompleteGrant(
            "Google returned no refresh token (offline access); remove syncctl's access at"
            " https://myaccount.google.com/permissions and connect again; nothing stored"
        )
    expires_at = token.get("expires_at")
    expiry = (
        clock.to_iso(datetime.fromtimestamp(float(expires_at), UTC))
        if expires_at is not None
        else None
    )
    return UserCredentials(
        client_id=section["client_id"],
        client_secret=section["client_secret"],
        refresh_token=token["refresh_token"],
        access_token=token.get("access_token") or None,
        token_expiry=expiry if token.get("access_token") else None,
        scopes=tuple(wanted),
    )


def _browser_available() -> bool:
    """Whether a browser can be started here (on a headless server the printed URL is the way)."""
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


@contextlib.contextmanager
def _plain_http_if_local(settings: Settings) -> Iterator[None]:
    """oauthlib refuses plain HTTP; allow it only for an http:// SYNCCTL_GOOGLE_ENDPOINT (the
    fake Google on loopback)."""
    name = "OAUTHLIB_INSECURE_TRANSPORT"
    if not (settings.google_endpoint or "").startswith("http://") or name in os.environ:
        yield
        return
    os.environ[name] = "1"
    try:
        yield
    finally:
        os.environ.pop(name, None)


class _Lines(io.TextIOBase):
    """A text stream that hands each complete line written to it to a callback."""

    def __init__(self, line: Callable[[str], None]) -> None:
        self._line = line
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                self._line(line)
        return len(text)
