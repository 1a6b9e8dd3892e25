"""The HTTP transport under every Google request: counts requests and watches the token endpoint."""

from __future__ import annotations

import errno
import json
from typing import Any
from urllib.parse import urlsplit

import httplib2

from syncctl.google.errors import (
    TOKEN_RETRYABLE_ERRORS,
    TOKEN_RETRYABLE_STATUSES,
    TokenEndpointUnavailable,
    parse_retry_after,
)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Connection errors that mean the request never left the machine (SPEC 3.4, rev 2): nobody
# answered the connection, or there was no route or no address to send it to.
_NOT_SENT_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}
)


def never_sent(exc: BaseException) -> bool:
    """True for a failure before any byte of the request reached a server (not an API call)."""
    if isinstance(exc, httplib2.ServerNotFoundError):  # the name did not resolve
        return True
    return isinstance(exc, OSError) and exc.errno in _NOT_SENT_ERRNOS


class CountingHttp(httplib2.Http):
    """An httplib2.Http that counts every request it sends, token refreshes included; one that
    never left the machine (a refused connection, an unresolvable host) is not counted."""

    def __init__(self, *, timeout: float, token_uri: str) -> None:
        proxy: Any = httplib2.proxy_info_from_environment
        if urlsplit(token_uri).hostname in _LOOPBACK_HOSTS:
            proxy = None  # never send loopback traffic (the fake Google) through a proxy
        super().__init__(timeout=timeout, proxy_info=proxy)
        self.follow_redirects = False
        self.token_uri = token_uri
        self.calls_made = 0
        self.refreshes = 0
        self.last_was_token_request = False  # which endpoint a failure happened at

    def request(  # type: ignore[override]
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        redirections: int = httplib2.DEFAULT_MAX_REDIRECTS,
        connection_type: Any = None,
    ) -> tuple[httplib2.Response, bytes]:
        """Send one request, counting it if it was sent, whether or not it succeeds."""
        self.last_was_token_request = method == "POST" and uri == self.token_uri
        try:
            response, content = super().request(
                uri,
                method=method,
                body=body,
                headers=headers,
                redirections=redirections,
                connection_type=connection_type,
            )
        except BaseException as exc:
            if not never_sent(exc):
                self.calls_made += 1
            raise
        self.calls_made += 1
        if method == "POST" and uri == self.token_uri:
            self._check_token_response(response, content)
        return response, content

    def _check_token_response(self, response: httplib2.Response, content: bytes) -> None:
        # google-auth retries these itself with real time.sleep; raising here (it becomes a
        # google.auth TransportError) hands them to syncctl's retry, which uses the injected sleep.
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            data = None
        data = data if isinstance(data, dict) else {}
        if response.status == 200:
            if data.get("access_token"):
                self.refreshes += 1
            return
        error = str(data.get("error") or "")
        if response.status in TOKEN_RETRYABLE_STATUSES or error in TOKEN_RETRYABLE_ERRORS:
            raise TokenEndpointUnavailable(
                response.status, parse_retry_after(response.get("retry-after"))
            )
