"""The transport under every Google request: keep-alive reuse, stale connections, body framing."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator

import pytest

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
