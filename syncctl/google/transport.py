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
from typing import Any, BinaryIO
from urllib.parse import urlsplit

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
_TLS_CONTEXT: ssl.SSLContext | None = None
_TLS_LOCK = threading.Lock()


class ProtocolError(httplib2.HttpLib2Error):
    """The server's answer is not HTTP/1.x as syncctl reads it."""


class _StaleConnection(Exception):
    """A kept-alive connection was closed by the server before it answered."""


def _tls_context() -> ssl.SSLContext:
    global _TLS_CONTEXT
    with _TLS_LOCK:
        if _TLS_CONTEXT is None:
            _TLS_CONTEXT = ssl.create_default_context(cafile=httplib2.certs.where())
        return _TLS_CONTEXT


class _Connection:
    """One open socket to a host, with its buffered reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: BinaryIO = sock.makefile("rb")

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


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
        split = urlsplit(uri)
        scheme = split.scheme.lower()
        host = split.hostname or ""
        port = split.port or (443 if scheme == "https" else 80)
        proxy = _proxy_for(scheme, host)
        if proxy and scheme == "http":
            target = uri  # a plain-HTTP proxy is sent the absolute URI
        else:
            target = f"{split.path or '/'}?{split.query}" if split.query else split.path or "/"
        payload = _request_bytes(method, target, split.netloc, body, headers)
        key = (scheme, host, port)
        conn = self._pool.take(key)
        reused = conn is not None
        while True:
            if conn is None:
                conn = _connect(scheme, host, port, self.timeout, proxy)
            try:
                _send(conn, payload, stale_ok=reused)
                response, content, keep = _read_response(conn.reader, method, stale_ok=reused)
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


def _read_line(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ProtocolError("an HTTP line longer than 64 KiB")
    return line


def _read_response(
    reader: BinaryIO, method: str, *, stale_ok: bool
) -> tuple[httplib2.Response, bytes, bool]:
    """Status, headers and body of one answer, and whether the connection may be kept."""
    try:
        status_line = _read_line(reader)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        if stale_ok:
            raise _StaleConnection from None
        raise
    if not status_line:
        if stale_ok:
            raise _StaleConnection
        raise ProtocolError("the server closed the connection without answering")
    version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
    fields: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = _read_line(reader)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    else:
        raise ProtocolError(f"more than {_MAX_HEADERS} header lines")
    status = int(code)
    fields["status"] = code
    response = httplib2.Response(fields)
    response.reason = reason
    response.version = 10 if version == "HTTP/1.0" else 11
    connection = fields.get("connection", "").lower()
    keep = "close" not in connection and (response.version == 11 or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return response, b"", keep
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return response, _read_chunked(reader), keep
    length = fields.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ProtocolError(f"a bad Content-Length: {length[:20]!r}")
        content = reader.read(int(length))
        if len(content) != int(length):
            raise ProtocolError("the server closed the connection mid-body")
        return response, content, keep
    return response, reader.read(), False  # the body runs to the end of the connection


def _read_chunked(reader: BinaryIO) -> bytes:
    parts = []
    while True:
        size_text = _read_line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"a bad chunk size: {size_text[:20]!r}") from None
        if size == 0:
            while _read_line(reader) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        chunk = reader.read(size)
        if len(chunk) != size:
            raise ProtocolError("the server closed the connection mid-chunk")
        parts.append(chunk)
        _read_line(reader)  # the CRLF after each chunk


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
    reader = sock.makefile("rb")
    try:
        response, _, _ = _read_response(reader, "HEAD", stale_ok=False)
    finally:
        reader.close()
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
