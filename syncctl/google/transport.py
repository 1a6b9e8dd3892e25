"""The HTTP transport under every Google request: counts requests and watches the token endpoint.

`CountingHttp` is the `http` object google-api-python-client and google-auth-httplib2 call
(`request(uri, method, body, headers) -> (httplib2.Response, bytes)`): a small HTTP/1.1 client
with keep-alive connections kept in a `KeepAlivePool`. A pool may outlive a session: the
orchestrator keeps one per worker thread, so a fleet's syncs reuse their TCP (and TLS)
connections instead of opening one per sync. Connections carry no credentials; every request
brings its own Authorization header.

Why not httplib2.Http or http.client: at fleet scale the transport was the largest share of
syncctl's CPU per request (benchmarks/bench_fleet.py). httplib2 re-encodes every URI character
by character (iri2uri) and carries a cache and auth layer unused here; http.client parses every
response's headers with the email package. Reading a status line, header lines and a body sized
by Content-Length or chunked encoding is all Google's JSON APIs need.

Kept from httplib2: no redirects followed (`follow_redirects` is False), gzip/deflate bodies
decoded, proxies from the environment (CONNECT for https; never for loopback, i.e. the fake
Google), TLS verified against the CA bundle httplib2 ships, and one retry on a fresh connection
when a reused keep-alive connection turns out to be closed before any byte of the answer.
"""

from __future__ import annotations

import errno
import functools
import json
import socket
import ssl
import threading
import urllib.request
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httplib2
import httplib2.certs

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
    if isinstance(exc, httplib2.ServerNotFoundError | socket.gaierror):  # no such name
        return True
    return isinstance(exc, OSError) and exc.errno in _NOT_SENT_ERRNOS


_MAX_LINE = 65536
_MAX_HEADERS = 200
_RECV_SIZE = 65536
_TLS_CONTEXT: ssl.SSLContext | None = None
_TLS_LOCK = threading.Lock()


class ProtocolError(httplib2.HttpLib2Error):
    """The server's answer is not HTTP/1.x as syncctl reads it."""


class _Response(httplib2.Response):
    """An httplib2.Response made from header fields whose names are lower-cased already.

    httplib2's own constructor tells its argument's type apart with isinstance checks against
    two classes (one an ABC) and lower-cases each name again: a tenth of the transport's CPU.
    """

    def __init__(self, fields: dict[str, str]) -> None:
        dict.__init__(self, fields)


class _StaleConnection(Exception):
    """A kept-alive connection was closed by the server before it answered."""


def _tls_context() -> ssl.SSLContext:
    global _TLS_CONTEXT
    with _TLS_LOCK:
        if _TLS_CONTEXT is None:
            _TLS_CONTEXT = ssl.create_default_context(cafile=httplib2.certs.where())
        return _TLS_CONTEXT


class _Connection:
    """One open socket to a host, with the bytes received from it but not yet read.

    Reads go straight to `recv`: a socket.makefile reader costs a Python-level SocketIO call
    per refill and a readline call per header line, and a response head usually arrives whole.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""

    def close(self) -> None:
        self.sock.close()

    def read_head(self) -> bytes:
        """The bytes up to and including the blank line that ends a head (all there is at EOF)."""
        end = head_end(self.pending)
        if end >= 0:
            head, self.pending = self.pending[:end], self.pending[end:]
            return head
        # Not all here yet (a head larger than one read): a line at a time, limits enforced.
        lines = [self.read_line()]
        split_status_line(lines[0].decode("latin-1"))  # not HTTP: say so before waiting on
        for _ in range(_MAX_HEADERS):
            lines.append(self.read_line())
            if lines[-1] in (b"\r\n", b"\n", b""):
                return b"".join(lines)
        raise ProtocolError(f"more than {_MAX_HEADERS} header lines")

    def read_line(self) -> bytes:
        """One line with its line break (without one at EOF), of at most 64 KiB."""
        data, start = self.pending, 0
        while True:
            newline = data.find(b"\n", start)
            if 0 <= newline < _MAX_LINE:
                self.pending = data[newline + 1 :]
                return data[: newline + 1]
            if newline >= _MAX_LINE or len(data) > _MAX_LINE:
                raise ProtocolError("an HTTP line longer than 64 KiB")
            chunk = self.sock.recv(_RECV_SIZE)
            if not chunk:
                self.pending = b""
                return data
            data, start = data + chunk, len(data)

    def read_exactly(self, size: int) -> bytes:
        """`size` bytes, or fewer if the server closes the connection first."""
        data = self.pending
        if len(data) >= size:
            self.pending = data[size:]
            return data[:size]
        parts, missing = [data], size - len(data)
        while missing > 0 and (chunk := self.sock.recv(min(missing, _RECV_SIZE))):
            parts.append(chunk)
            missing -= len(chunk)
        self.pending = b""
        return b"".join(parts)

    def read_to_end(self) -> bytes:
        """Everything until the server closes the connection."""
        parts = [self.pending]
        while chunk := self.sock.recv(_RECV_SIZE):
            parts.append(chunk)
        self.pending = b""
        return b"".join(parts)


class KeepAlivePool:
    """Keep-alive connections by (scheme, host, port), for one thread at a time."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, str, int], _Connection] = {}

    def take(self, key: tuple[str, str, int]) -> _Connection | None:
        return self._connections.pop(key, None)

    def give_back(self, key: tuple[str, str, int], conn: _Connection) -> None:
        old = self._connections.pop(key, None)
        if old is not None:
            old.close()
        self._connections[key] = conn

    def close(self) -> None:
        """Close every kept connection."""
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()


class CountingHttp:
    """An httplib2-compatible http object that counts every request it sends, token refreshes
    included; one that never left the machine (a refused connection, an unresolvable host) is not
    counted."""

    follow_redirects = False

    def __init__(
        self,
        *,
        timeout: float,
        token_uri: str,
        pool: KeepAlivePool | None = None,
        spend: Callable[[str], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.token_uri = token_uri
        self.calls_made = 0
        self.refreshes = 0
        self.last_was_token_request = False  # which endpoint a failure happened at
        self._own_pool = pool is None
        self._pool = pool if pool is not None else KeepAlivePool()
        self._spend = spend

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        redirections: int = httplib2.DEFAULT_MAX_REDIRECTS,
        connection_type: Any = None,
    ) -> tuple[httplib2.Response, bytes]:
        """Send one request, counting it if it was sent, whether or not it succeeds."""
        del redirections, connection_type  # httplib2's signature; redirects are not followed
        self.last_was_token_request = method == "POST" and uri == self.token_uri
        if self._spend is not None:
            self._spend(uri)  # may wait, or raise QuotaBudgetSpent before anything is sent
        try:
            response, content = self._send_request(uri, method, body, headers)
        except BaseException as exc:
            if not never_sent(exc):
                self.calls_made += 1
            raise
        self.calls_made += 1
        if method == "POST" and uri == self.token_uri:
            self._check_token_response(response, content)
        return response, content

    def _send_request(
        self, uri: str, method: str, body: Any, headers: Any
    ) -> tuple[httplib2.Response, bytes]:
        scheme, host, port, netloc, target = split_uri(uri)
        proxy = _proxy_for(scheme, host)
        if proxy and scheme == "http":
            target = uri  # a plain-HTTP proxy is sent the absolute URI
        payload = _request_bytes(method, target, netloc, body, headers)
        key = (scheme, host, port)
        conn = self._pool.take(key)
        reused = conn is not None
        while True:
            if conn is None:
                conn = _connect(scheme, host, port, self.timeout, proxy)
            try:
                _send(conn, payload, stale_ok=reused)
                response, content, keep = _read_response(conn, method, stale_ok=reused)
            except _StaleConnection:
                conn.close()
                conn, reused = None, False  # the server closed it while idle: once more, fresh
                continue
            except BaseException:
                conn.close()
                raise
            break
        if keep:
            self._pool.give_back(key, conn)
        else:
            conn.close()
        return response, _decoded(response, content)

    def close(self) -> None:
        """Close this session's connections (a shared pool is closed by its owner)."""
        if self._own_pool:
            self._pool.close()

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


def split_uri(uri: str) -> tuple[str, str, int, str, str]:
    """Scheme, host, port, netloc and request target of an absolute URI, as urlsplit reads it.

    The part before the path is split once per origin (urlsplit's own cache misses on every new
    page token, and its hostname and port are parsed again on each access).
    """
    colon = uri.find(":")
    slash = uri.find("/", colon + 3)
    origin = uri if slash < 0 else uri[:slash]
    if (
        uri.startswith("//", colon + 1)
        and "?" not in origin
        and "#" not in origin
        and " " not in uri
        and uri.isprintable()  # urlsplit would strip or drop control characters
    ):
        scheme, host, port, netloc = _split_origin(origin)
        if scheme:
            path, _, query = uri[len(origin) :].partition("#")[0].partition("?")
            return scheme, host, port, netloc, _target(path, query)
    split = urlsplit(uri)
    return (*_origin_parts(split), _target(split.path, split.query))


@functools.lru_cache(maxsize=256)
def _split_origin(origin: str) -> tuple[str, str, int, str]:
    return _origin_parts(urlsplit(origin))


def _origin_parts(split: SplitResult) -> tuple[str, str, int, str]:
    scheme = split.scheme.lower()
    return (
        scheme,
        split.hostname or "",
        split.port or (443 if scheme == "https" else 80),
        split.netloc,
    )


def _target(path: str, query: str) -> str:
    return f"{path or '/'}?{query}" if query else path or "/"


def _request_bytes(method: str, target: str, netloc: str, body: Any, headers: Any) -> bytes:
    if isinstance(body, str):
        body = body.encode("utf-8")
    sent = {"host": netloc.rpartition("@")[2], "accept-encoding": "gzip, deflate"}
    for name, value in (headers or {}).items():
        sent[str(name).lower()] = str(value)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        sent["content-length"] = str(len(body or b""))
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in sent.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {name} holds a line break")
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


def _send(conn: _Connection, payload: bytes, *, stale_ok: bool) -> None:
    try:
        conn.sock.sendall(payload)
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
        if stale_ok:
            raise _StaleConnection from None
        raise


def head_end(data: bytes) -> int:
    """Where the head in `data` ends: after its first blank line (CRLF or LF), else -1."""
    crlf = data.find(b"\n\r\n")
    lf = data.find(b"\n\n", 0, crlf + 1 if crlf >= 0 else len(data))  # only one before crlf
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def split_status_line(line: str) -> tuple[str, str, str]:
    """The version, status code and reason of a status line."""
    version, _, rest = line.rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {line[:40].encode('latin-1')!r}")
    return version, code, reason


def parse_head(head: bytes) -> httplib2.Response:
    """The status line and header fields of a response head, as an httplib2.Response."""
    if len(head) > _MAX_LINE:
        *lines, last = head.split(b"\n")
        if len(last) > _MAX_LINE or any(len(line) >= _MAX_LINE for line in lines):
            raise ProtocolError("an HTTP line longer than 64 KiB")
    status_line, *lines = head.decode("latin-1").split("\n")
    version, code, reason = split_status_line(status_line)
    while lines and lines[-1] in ("\r", ""):
        lines.pop()  # the blank line that ends the head, and what follows its line break
    if len(lines) >= _MAX_HEADERS:
        raise ProtocolError(f"more than {_MAX_HEADERS} header lines")
    fields: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    fields["status"] = code
    response = _Response(fields)
    response.status = int(code)
    response.reason = reason
    response.version = 10 if version == "HTTP/1.0" else 11
    return response


def _read_response(
    conn: _Connection, method: str, *, stale_ok: bool
) -> tuple[httplib2.Response, bytes, bool]:
    """Status, headers and body of one answer, and whether the connection may be kept."""
    if not conn.pending:
        try:
            conn.pending = conn.sock.recv(_RECV_SIZE)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            if stale_ok:
                raise _StaleConnection from None
            raise
        if not conn.pending:
            if stale_ok:
                raise _StaleConnection
            raise ProtocolError("the server closed the connection without answering")
    response = parse_head(conn.read_head())
    status = response.status
    connection = response.get("connection", "").lower()
    keep = "close" not in connection and (response.version == 11 or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return response, b"", keep
    if "chunked" in response.get("transfer-encoding", "").lower():
        return response, _read_chunked(conn), keep
    length = response.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ProtocolError(f"a bad Content-Length: {length[:20]!r}")
        content = conn.read_exactly(int(length))
        if len(content) != int(length):
            raise ProtocolError("the server closed the connection mid-body")
        return response, content, keep
    return response, conn.read_to_end(), False  # the body runs to the end of the connection


def _read_chunked(conn: _Connection) -> bytes:
    parts = []
    while True:
        size_text = conn.read_line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"a bad chunk size: {size_text[:20]!r}") from None
        if size == 0:
            while conn.read_line() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        chunk = conn.read_exactly(size)
        if len(chunk) != size:
            raise ProtocolError("the server closed the connection mid-chunk")
        parts.append(chunk)
        conn.read_line()  # the CRLF after each chunk


@functools.lru_cache(maxsize=64)
def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The proxy for a host, from the environment as read once (it scans every variable)."""
    if host in _LOOPBACK_HOSTS:
        return None  # never send loopback traffic (the fake Google) through a proxy
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    split = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return split.hostname or "", split.port or 80


def _connect(
    scheme: str, host: str, port: int, timeout: float, proxy: tuple[str, int] | None
) -> _Connection:
    sock = socket.create_connection(proxy or (host, port), timeout=timeout)
    try:
        # Headers and body may go out in two writes; without NODELAY, Nagle adds 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if proxy and scheme == "https":
            _tunnel(sock, host, port)
        if scheme == "https":
            sock = _tls_context().wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return _Connection(sock)


def _tunnel(sock: socket.socket, host: str, port: int) -> None:
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    response, _, _ = _read_response(_Connection(sock), "HEAD", stale_ok=False)
    if response.status != 200:
        raise ProtocolError(f"the proxy refused the tunnel to {host}:{port} ({response.status})")


def _decoded(response: httplib2.Response, content: bytes) -> bytes:
    encoding = response.get("content-encoding")
    if encoding not in ("gzip", "deflate", "zlib") or not content:
        return content
    try:
        decoded = zlib.decompress(content, 47)  # gzip or zlib header, detected
    except zlib.error:
        decoded = zlib.decompress(content, -zlib.MAX_WBITS)  # raw deflate
    response["content-length"] = str(len(decoded))
    response["-content-encoding"] = response.pop("content-encoding")
    return decoded
