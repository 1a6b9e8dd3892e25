"""The transport under every Google request: keep-alive reuse, stale connections, body framing."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httplib2
import pytest

from syncctl.google import transport
from syncctl.google.transport import CountingHttp, KeepAlivePool, ProtocolError


class RawServer:
    """A loopback server that answers each request with the next canned reply, then maybe closes."""

    def __init__(self, replies: list[tuple[bytes, bool]]) -> None:
        self.replies = replies
        self.connections = 0
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.replies:
            conn, _ = self._sock.accept()
            self.connections += 1
            with conn, conn.makefile("rb") as reader:  # both, or the socket stays open
                while self.replies:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    self.requests.append(head)
                    reply, close_after = self.replies.pop(0)
                    conn.sendall(reply)
                    if close_after:
                        break

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[RawServer] = []

    def start(replies: list[tuple[bytes, bool]]) -> RawServer:
        server = RawServer(replies)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), headers, body)


def http_on(pool: KeepAlivePool) -> CountingHttp:
    return CountingHttp(timeout=5, token_uri="http://127.0.0.1:1/token", pool=pool)


def test_sessions_on_one_pool_share_one_keep_alive_connection(serve):
    server = serve([(ok(b'{"a":1}'), False), (ok(b'{"b":2}'), False)])
    pool = KeepAlivePool()
    url = f"http://127.0.0.1:{server.port}/calendar/v3/users/me/calendarList"

    first = http_on(pool).request(url)
    second = http_on(pool).request(url)

    assert (first[0].status, first[1]) == (200, b'{"a":1}')
    assert second[1] == b'{"b":2}'
    assert server.connections == 1
    pool.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_once(serve):
    server = serve([(ok(b"one"), True), (ok(b"two"), False)])
    http = CountingHttp(timeout=5, token_uri="http://127.0.0.1:1/token")
    url = f"http://127.0.0.1:{server.port}/v1/contactGroups"

    assert http.request(url)[1] == b"one"
    assert http.request(url)[1] == b"two"

    assert server.connections == 2
    assert http.calls_made == 2
    http.close()


def test_chunked_and_gzip_bodies_are_decoded(serve):
    packed = gzip.compress(b'{"items":[]}')
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
        + b"%x\r\n%s\r\n" % (5, packed[:5])
        + b"%x\r\n%s\r\n" % (len(packed) - 5, packed[5:])
        + b"0\r\n\r\n"
    )
    server = serve([(chunked, False)])
    http = CountingHttp(timeout=5, token_uri="http://127.0.0.1:1/token")

    response, content = http.request(f"http://127.0.0.1:{server.port}/calendar/v3/x")

    assert content == b'{"items":[]}'
    assert response["-content-encoding"] == "gzip"
    assert b"accept-encoding: gzip, deflate" in server.requests[0]
    http.close()


def test_a_reply_that_is_not_http_is_a_protocol_error(serve):
    server = serve([(b"SSH-2.0-OpenSSH\r\n\r\n", True)])
    http = CountingHttp(timeout=5, token_uri="http://127.0.0.1:1/token")

    with pytest.raises(ProtocolError):
        http.request(f"http://127.0.0.1:{server.port}/calendar/v3/x")
    http.close()


def test_a_head_larger_than_one_read_is_read_a_line_at_a_time(serve):
    big = [b"X-Big-%d: %s" % (i, b"v" * 50000) for i in range(3)]
    server = serve([(ok(b"done", *big), False)])
    http = CountingHttp(timeout=5, token_uri="http://127.0.0.1:1/token")

    response, content = http.request(f"http://127.0.0.1:{server.port}/x")

    assert content == b"done"
    assert response["x-big-2"] == "v" * 50000
    http.close()


@pytest.mark.parametrize(
    ("extra", "fails"),
    [
        ([b"X: " + b"v" * (65536 - 5)], False),  # 64 KiB with its CRLF
        ([b"X: " + b"v" * (65536 - 4)], True),
        ([b"X-%d: 1" % i for i in range(198)], False),  # with Content-Length, 199 header lines
        ([b"X-%d: 1" % i for i in range(199)], True),
    ],
)
def test_header_line_limits(serve, extra, fails):
    server = serve([(ok(b"{}", *extra), True)])
    http = CountingHttp(timeout=5, token_uri="http://127.0.0.1:1/token")

    if fails:
        with pytest.raises(ProtocolError):
            http.request(f"http://127.0.0.1:{server.port}/x")
    else:
        assert http.request(f"http://127.0.0.1:{server.port}/x")[1] == b"{}"
    http.close()


@pytest.mark.parametrize(
    ("reply", "content"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", b"ok"),  # bare LF line ends
        (b"HTTP/1.0 200 OK\r\n\r\nto the end", b"to the end"),  # no length: read to EOF
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)
def test_bodies_are_framed_as_the_head_says(serve, reply, content):
    server = serve([(reply, True)])
    http = CountingHttp(timeout=5, token_uri="http://127.0.0.1:1/token")

    assert http.request(f"http://127.0.0.1:{server.port}/x")[1] == content
    http.close()


def test_a_body_shorter_than_its_content_length_is_a_protocol_error(serve):
    server = serve([(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True)])
    http = CountingHttp(timeout=5, token_uri="http://127.0.0.1:1/token")

    with pytest.raises(ProtocolError, match="mid-body"):
        http.request(f"http://127.0.0.1:{server.port}/x")
    http.close()


@pytest.mark.parametrize(("status", "refused"), [(200, False), (403, True)])
def test_a_proxy_tunnel_is_opened_or_refused_by_its_status(serve, status, refused):
    server = serve([(b"HTTP/1.1 %d X\r\n\r\n" % status, False)])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if refused:
            with pytest.raises(ProtocolError, match="refused the tunnel"):
                transport._tunnel(sock, "example.com", 443)
        else:
            transport._tunnel(sock, "example.com", 443)
    assert server.requests == [b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"]


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"", -1),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\n", -1),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\n\r\nbody\n\n", 25),
        (b"HTTP/1.1 200 OK\nA: 1\n\nbody\r\n\r\n", 22),
        (b"HTTP/1.1 200 OK\nA: 1\n\r\n\r\n", 23),  # a bare LF, then a CRLF blank line
        (b"HTTP/1.1 200 OK\r\nA: 1\r\n\nrest", 24),
    ],
)
def test_head_end_is_after_the_first_blank_line(data, end):
    assert transport.head_end(data) == end


@pytest.mark.parametrize(
    ("head", "status", "reason", "version", "fields"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
            200,
            "OK",
            11,
            {"content-type": "application/json", "content-length": "2", "status": "200"},
        ),
        (
            b"HTTP/1.0 404 Not Found\nVary: Origin\nVARY:  X-Origin \n\n",
            404,
            "Not Found",
            10,
            {"vary": "Origin, X-Origin", "status": "404"},
        ),
        (b"HTTP/1.1 204\r\nStatus: 500\r\n\r\n", 204, "", 11, {"status": "204"}),
        (
            b"HTTP/1.1 200 OK\r\nA: b: c\r\nPartial",
            200,
            "OK",
            11,
            {"a": "b: c", "partial": "", "status": "200"},
        ),
        (b"HTTP/1.1 200 OK\r\n", 200, "OK", 11, {"status": "200"}),  # closed after the status line
    ],
)
def test_parse_head(head, status, reason, version, fields):
    response = transport.parse_head(head)

    assert (response.status, response.reason, response.version) == (status, reason, version)
    assert dict(response) == fields
    assert isinstance(response, httplib2.Response)


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\n" + b"A: 1\r\n" * 200 + b"\r\n", "more than 200 header lines"),
        (b"HTTP/1.1 200 OK\r\nA: " + b"v" * 65533 + b"\r\n\r\n", "longer than 64 KiB"),
    ],
)
def test_parse_head_refuses(head, message):
    with pytest.raises(ProtocolError, match=message):
        transport.parse_head(head)


def reference_split(uri: str) -> tuple[str, str, int, str, str]:
    """What CountingHttp made of a URI before split_uri: urlsplit, field by field."""
    split = urlsplit(uri)
    scheme = split.scheme.lower()
    port = split.port or (443 if scheme == "https" else 80)
    target = f"{split.path or '/'}?{split.query}" if split.query else split.path or "/"
    return scheme, split.hostname or "", port, split.netloc, target


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8080/v1/people/me/connections?personFields=names&pageToken=a%2Fb",
        "https://people.googleapis.com/v1/contactGroups?alt=json",
        "https://oauth2.googleapis.com/token",
        "HTTPS://Example.COM/Path",
        "http://example.com",
        "http://example.com?q=1",
        "http://example.com#frag",
        "http://example.com/x?",
        "http://example.com/x#frag?no",
        "http://example.com/x?y=1#frag",
        "http://user:pw@example.com:81/x",
        "http://[::1]:8080/x?y",
        "http://example.com/a b",
        "http://example.com/a\tb",
        "http://exa\nmple.com/x",
        " http://example.com/x",
        "http://example.com/caf\u00e9",
        "//example.com/x",
        "1http://example.com/x",
        "mailto:someone@example.com",
    ],
)
def test_split_uri_reads_a_uri_as_urlsplit_does(uri):
    assert transport.split_uri(uri) == reference_split(uri)
