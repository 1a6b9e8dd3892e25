"""The loopback HTTP server: routing, counting, latency and faults, then the endpoint code."""

from __future__ import annotations

import json
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from http import HTTPStatus
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
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
REASONS = {status.value: status.phrase for status in HTTPStatus}
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


# The routes by path length, so a request is matched against only those that could fit.
_ROUTES_BY_LENGTH: dict[int, tuple[tuple[str, tuple[str, ...], str, Handler], ...]] = {
    length: tuple(r for r in ROUTES if len(r[1]) == length)
    for length in {len(pattern) for _, pattern, _, _ in ROUTES}
}


def route(method: str, segments: list[str]) -> tuple[str, Handler | None]:
    """The endpoint name and handler for a request (`unknown`, None when nothing matches)."""
    for route_method, pattern, endpoint, handler in _ROUTES_BY_LENGTH.get(len(segments), ()):
        if all(
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
        # Connection threads are kept and reused: a client that opens a connection per sync
        # (every GoogleSession does) would otherwise cost a thread start per sync.
        self._jobs: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._workers = 0
        self._idle = 0
        self._pool_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on an idle worker thread, or on a new one if none is idle."""
        with self._pool_lock:
            if self._idle:
                self._idle -= 1
            else:
                self._workers += 1
                threading.Thread(target=self._work, name="fakegoogle-conn", daemon=True).start()
        self._jobs.put((request, client_address))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self.process_request_thread(*job)
            with self._pool_lock:
                self._idle += 1

    def server_close(self) -> None:
        """Close the listening socket and let every worker thread end."""
        super().server_close()
        with self._pool_lock:
            workers, self._workers, self._idle = self._workers, 0, 0
        for _ in range(workers):
            self._jobs.put(None)

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
        # Replies go out in one write; NODELAY still matters for the client's two-part POSTs.
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

    def handle_one_request(self) -> None:
        """Read one request and answer it.

        The fake's own lean reading of HTTP/1.1 (request line, headers, Content-Length body),
        not http.server's email-parser path: a simulated fleet sends millions of requests and
        this server shares their process with the client under test.
        """
        try:
            self._one_request()
        except TimeoutError:  # an idle keep-alive connection: close it
            self.close_connection = True

    def _one_request(self) -> None:
        line = self.rfile.readline(MAX_LINE_BYTES + 1)
        if not line:
            self.close_connection = True
            return
        parts = line.decode("latin-1").split()
        if len(line) > MAX_LINE_BYTES or len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._send_plain(400, "Bad Request", close=True)
            return
        self.command, self.path, self.request_version = parts
        fields: dict[str, str] = {}
        readline = self.rfile.readline
        while True:
            header = readline(MAX_LINE_BYTES + 1)
            if header == b"\r\n" or header == b"\n" or not header:
                break
            if len(header) > MAX_LINE_BYTES or len(fields) >= MAX_HEADERS:
                self._send_plain(431, "Request Header Fields Too Large", close=True)
                return
            name, colon, value = header.decode("latin-1").partition(":")
            if not colon:
                self._send_plain(400, "Bad Request", close=True)
                return
            fields[name.strip().lower()] = value.strip()
        headers = _Headers()
        dict.update(headers, fields)  # the names are lower-cased already
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if self.command not in METHODS:
            self._send_plain(501, "Not Implemented", close=self.close_connection)
            return
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
        phrase = REASONS.get(reply.status, "Unknown")
        lines = [f"HTTP/1.1 {reply.status} {phrase}", f"Server: {self.server_version}"]
        if reply.body is not None:
            lines.append("Content-Type: application/json; charset=UTF-8")
        lines.append(f"Content-Length: {len(payload)}")
        lines.extend(f"{name}: {value}" for name, value in reply.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write: headers and body in a single segment.
        self.wfile.write(head if self.command == "HEAD" else head + payload)

    def _send_plain(self, status: int, phrase: str, *, close: bool) -> None:
        self.close_connection = close
        body = phrase.encode() + b"\n"
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)


class _Headers(dict[str, str]):
    """Request headers by lower-cased name; `get` and `[]` ignore case, as HTTP does."""

    def __setitem__(self, name: str, value: str) -> None:
        super().__setitem__(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)
