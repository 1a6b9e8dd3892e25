"""The loopback HTTP server: routing, counting, latency and faults, then the endpoint code."""

from __future__ import annotations

import functools
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
from urllib.parse import unquote, urlsplit

from syncctl.fakegoogle import calendar_api, errors, oauth_api, people_api
from syncctl.fakegoogle.control import control
from syncctl.fakegoogle.errors import ApiError, Reply
from syncctl.fakegoogle.faults import family
from syncctl.fakegoogle.state import ApiRequest, FakeState, parse_query

if TYPE_CHECKING:
    from syncctl.fakegoogle.fake import FakeGoogle

Handler = Callable[[FakeState, ApiRequest], Reply]
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
REASONS = {status.value: status.phrase for status in HTTPStatus}
ANY = "*"
# One compact encoder for every reply (json.dumps with options builds a new one per call).
_to_json = json.JSONEncoder(separators=(",", ":")).encode
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


@functools.lru_cache(maxsize=16384)
def route(method: str, segments: tuple[str, ...]) -> tuple[str, Handler | None]:
    """The endpoint name and handler for a request (`unknown`, None when nothing matches)."""
    for route_method, pattern, endpoint, handler in _ROUTES_BY_LENGTH.get(len(segments), ()):
        if all(
            part == ANY or part == segment for part, segment in zip(pattern, segments, strict=True)
        ):
            return endpoint, handler if route_method == method else None
    return "unknown", None


class BadRequest(Exception):
    """A request the fake refuses to read further (400 or 431), closing the connection."""

    def __init__(self, status: int, phrase: str) -> None:
        super().__init__(status, phrase)
        self.status = status
        self.phrase = phrase


def split_request_line(line: str) -> tuple[str, str, str]:
    """The method, target and version of a request line (with or without its line break)."""
    parts = line.split()
    if len(line) > MAX_LINE_BYTES or len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(400, "Bad Request")
    return parts[0], parts[1], parts[2]


def add_field(fields: dict[str, str], line: str) -> None:
    """Add one header line to the fields by lower-cased name (a repeated name: the last wins)."""
    if len(line) > MAX_LINE_BYTES or len(fields) >= MAX_HEADERS:
        raise BadRequest(431, "Request Header Fields Too Large")
    name, colon, value = line.partition(":")
    if not colon:
        raise BadRequest(400, "Bad Request")
    fields[name.strip().lower()] = value.strip()


def parse_request_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Method, target, version and header fields of a request head that ends in a blank line."""
    request_line, *lines = head.decode("latin-1").split("\n")
    method, target, version = split_request_line(request_line)
    fields: dict[str, str] = {}
    for line in lines:
        if line == "\r" or not line:
            break
        add_field(fields, line)
    return method, target, version, fields


def split_target(target: str) -> tuple[str, str]:
    """The path and query of a request target, as urlsplit reads them."""
    if target.startswith("/") and not target.startswith("//"):
        # The usual origin form: no scheme or authority to find, and the request line's split
        # left no whitespace for urlsplit to strip.
        path, _, query = target.partition("#")[0].partition("?")
        return path, query
    split = urlsplit(target)
    return split.path, split.query


# A fleet asks the same few paths over and over (a user's calendars, the token endpoint).
@functools.lru_cache(maxsize=16384)
def path_segments(path: str) -> tuple[str, ...]:
    """The URL-decoded segments of a request path (a trailing slash adds none)."""
    # Split before decoding, so an encoded `/` inside a calendar id stays inside its segment.
    parts = path.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()
    return tuple(unquote(part) for part in parts)


def dispatch(
    state: FakeState, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> Reply:
    """Answer one Google API request: count it, delay it, maybe fail it, else serve it."""
    segments = path_segments(path)
    request = ApiRequest(method, segments, parse_query(query, keep_blank=True), headers, body)
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
        try:
            fields = self._read_head()
        except BadRequest as refused:
            self._send_plain(refused.status, refused.phrase, close=True)
            return
        if fields is None:
            self.close_connection = True
            return
        headers = _Headers()
        dict.update(headers, fields)  # the names are lower-cased already
        self.headers = headers  # type: ignore[assignment]
        connection = fields.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if self.command not in METHODS:
            self._send_plain(501, "Not Implemented", close=self.close_connection)
            return
        length = int(fields.get("content-length") or 0)
        self._handle(self.rfile.read(length) if length > 0 else b"")

    def _read_head(self) -> dict[str, str] | None:
        """Request line and header fields of the next request (None at EOF), or BadRequest."""
        rfile = self.rfile
        buffered = rfile.peek(MAX_LINE_BYTES)  # what one read brought, without taking it
        if not buffered:
            return None
        end = buffered.find(b"\r\n\r\n") + 4
        bare_lf_blank_line_before = (
            buffered.find(b"\n\n", 0, end) >= 0 or buffered.find(b"\n\r\n", 0, end - 2) >= 0
        )
        if 3 < end <= MAX_LINE_BYTES and not bare_lf_blank_line_before:
            # The usual case: the whole head came in one read; split it in one go (no line in it
            # can be over the limit).
            head = rfile.read(end)
            self.command, self.path, self.request_version, fields = parse_request_head(head)
            return fields
        line = rfile.readline(MAX_LINE_BYTES + 1)
        if not line:
            return None
        self.command, self.path, self.request_version = split_request_line(line.decode("latin-1"))
        fields = {}
        while True:
            header = rfile.readline(MAX_LINE_BYTES + 1)
            if header == b"\r\n" or header == b"\n" or not header:
                return fields
            add_field(fields, header.decode("latin-1"))

    def _handle(self, body: bytes) -> None:
        path, query = split_target(self.path)
        if path.startswith("/_fake/"):
            reply = control(self.server.fake, self.command, self.path, body)
        else:
            try:
                reply = dispatch(self.server.state, self.command, path, query, self.headers, body)
            except Exception:  # a bug in the fake: answer 500 and show it, never hang the client
                traceback.print_exc(file=sys.stderr)
                reply = Reply(
                    500,
                    {"error": {"code": 500, "message": "fake Google bug", "status": "INTERNAL"}},
                )
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else _to_json(reply.body).encode()
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
        self.connection.sendall(head if self.command == "HEAD" else head + payload)

    def _send_plain(self, status: int, phrase: str, *, close: bool) -> None:
        self.close_connection = close
        body = phrase.encode() + b"\n"
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        )
        self.connection.sendall(head.encode("latin-1") + body)


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
