"""The loopback HTTP server: routing, counting, latency and faults, then the endpoint code."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from syncctl.fakegoogle import calendar_api, errors, oauth_api, people_api
from syncctl.fakegoogle.control import control
from syncctl.fakegoogle.errors import ApiError, Reply
from syncctl.fakegoogle.faults import family
from syncctl.fakegoogle.state import ApiRequest, FakeState

if TYPE_CHECKING:
    from syncctl.fakegoogle.fake import FakeGoogle

Handler = Callable[[FakeState, ApiRequest], Reply]
ANY = "*"
# (method, path segments with ANY wildcards, endpoint name, handler)
ROUTES: tuple[tuple[str, tuple[str, ...], str, Handler], ...] = (
    ("GET", ("o", "oauth2", "auth"), "oauth.authorize", oauth_api.authorize),
    ("POST", ("token",), "oauth.token", oauth_api.token),
    ("GET", ("tokeninfo",), "oauth.tokeninfo", oauth_api.tokeninfo),
    ("POST", ("tokeninfo",), "oauth.tokeninfo", oauth_api.tokeninfo),
    (
        "GET",
        ("v1", "people", ANY, "connections"),
        "people.connections.list",
        people_api.list_connections,
    ),
    ("GET", ("v1", "contactGroups"), "people.contactGroups.list", people_api.list_contact_groups),
    (
        "GET",
        ("calendar", "v3", "users", "me", "calendarList"),
        "calendar.calendarList.list",
        calendar_api.list_calendars,
    ),
    (
        "GET",
        ("calendar", "v3", "calendars", ANY, "events"),
        "calendar.events.list",
        calendar_api.list_events,
    ),
    (
        "POST",
        ("calendar", "v3", "calendars", ANY, "events", "watch"),
        "calendar.events.watch",
        calendar_api.watch_events,
    ),
    (
        "POST",
        ("calendar", "v3", "channels", "stop"),
        "calendar.channels.stop",
        calendar_api.stop_channel,
    ),
)


def route(method: str, segments: list[str]) -> tuple[str, Handler | None]:
    """The endpoint name and handler for a request (`unknown`, None when nothing matches)."""
    for route_method, pattern, endpoint, handler in ROUTES:
        if len(pattern) == len(segments) and all(
            part == ANY or part == segment for part, segment in zip(pattern, segments, strict=True)
        ):
            return endpoint, handler if route_method == method else None
    return "unknown", None


def dispatch(
    state: FakeState, method: str, target: str, headers: Mapping[str, str], body: bytes
) -> Reply:
    """Answer one Google API request: count it, delay it, maybe fail it, else serve it."""
    split = urlsplit(target)
    # Split before decoding, so an encoded `/` inside a calendar id stays inside its segment.
    segments = [unquote(part) for part in split.path.split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()
    request = ApiRequest(
        method, segments, parse_qs(split.query, keep_blank_values=True), headers, body
    )
    endpoint, handler = route(method, segments)
    with state.lock:
        user_id = state.attribute(endpoint, request)
    state.counters.add(user_id, endpoint)
    if state.faults.latency > 0:
        time.sleep(state.faults.latency)
    try:
        fault = state.faults.take(user_id, endpoint)
        if fault is not None:
            raise errors.injected(
                family(endpoint), fault.status, reason=fault.reason, retry_after=fault.retry_after
            )
        if handler is None:
            raise errors.rpc_error(404, "Not Found")
        return handler(state, request)
    except ApiError as exc:
        return exc.reply


class FakeHTTPServer(ThreadingHTTPServer):
    """A threaded server that remembers open connections so stop() can close keep-alives."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # run-due and the simulator open many connections at once

    def __init__(self, address: tuple[str, int], fake: FakeGoogle, state: FakeState) -> None:
        self.fake = fake
        self.state = state
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in list(self.connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httplib2 expects
    server_version = "ESF"
    sys_version = ""
    timeout = 120
    server: FakeHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle adds 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silent: request lines can carry access tokens (tokeninfo)."""

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if urlsplit(self.path).path.startswith("/_fake/"):
            reply = control(self.server.fake, self.command, self.path, body)
        else:
            try:
                reply = dispatch(self.server.state, self.command, self.path, self.headers, body)
            except Exception:  # a bug in the fake: answer 500 and show it, never hang the client
                traceback.print_exc(file=sys.stderr)
                reply = Reply(
                    500,
                    {"error": {"code": 500, "message": "fake Google bug", "status": "INTERNAL"}},
                )
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = (
            b"" if reply.body is None else json.dumps(reply.body, separators=(",", ":")).encode()
        )
        self.send_response(reply.status)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
