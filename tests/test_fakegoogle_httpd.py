"""The fake Google's HTTP/1.1 reading, over raw loopback sockets: framing, limits, refusals."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from syncctl.fakegoogle import FakeGoogle
from syncctl.fakegoogle.httpd import BadRequest, parse_request_head, path_segments, split_target
from syncctl.fakegoogle.state import parse_query


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with FakeGoogle() as fake:
        yield int(fake.base_url.rpartition(":")[2])


def exchange(port: int, *writes: bytes) -> list[str]:
    """Send each write in its own segment; the status line of every reply until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for data in writes:
            sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return re.findall(r"HTTP/1\.1 \d{3} [^\r]*", received.decode("latin-1"))


CLOSE = b"Connection: close\r\n"


def test_a_head_that_arrives_in_pieces_is_read_whole(port):
    assert exchange(port, b"GET /nope HTTP/1.1\r\nHo", b"st: x\r\n" + CLOSE, b"\r\n") == [
        "HTTP/1.1 404 Not Found"
    ]


def test_two_requests_in_one_segment_are_answered_in_order(port):
    pipelined = b"GET /nope HTTP/1.1\r\n\r\nGET /v1/contactGroups HTTP/1.1\r\n" + CLOSE + b"\r\n"
    assert exchange(port, pipelined) == ["HTTP/1.1 404 Not Found", "HTTP/1.1 401 Unauthorized"]


def test_a_post_body_in_the_head_segment_is_not_read_as_the_next_request(port):
    body = b"grant_type=refresh_token"
    request = b"POST /token HTTP/1.1\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), CLOSE, body)
    assert exchange(port, request) == ["HTTP/1.1 401 Unauthorized"]  # one answer: no client


def test_bare_lf_line_ends_are_read(port):
    assert exchange(port, b"GET /nope HTTP/1.1\nConnection: close\n\n") == [
        "HTTP/1.1 404 Not Found"
    ]


def test_the_head_ends_at_its_first_blank_line_whatever_the_line_ends(port):
    mixed = b"GET /nope HTTP/1.1\nX: 1\n\r\n\r\n"  # the last CRLF is a (bad) next request
    assert exchange(port, mixed) == ["HTTP/1.1 404 Not Found", "HTTP/1.1 400 Bad Request"]


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /nope\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /nope HTTP/1.1\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"BREW /nope HTTP/1.1\r\n" + CLOSE + b"\r\n", "HTTP/1.1 501 Not Implemented"),
        (
            b"GET /nope HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            b"GET /nope HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            b"GET /nope HTTP/1.1\r\n" + b"X: 1\r\n" * 500 + CLOSE + b"\r\n",
            "HTTP/1.1 404 Not Found",
        ),
    ],
)
def test_what_the_fake_refuses_or_serves(port, request_bytes, status_line):
    assert exchange(port, request_bytes) == [status_line]


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", ("GET", "/", "HTTP/1.1", {})),
        (
            b"POST /token HTTP/1.1\r\nHost: h\r\nContent-Length:  3 \r\n\r\n",
            ("POST", "/token", "HTTP/1.1", {"host": "h", "content-length": "3"}),
        ),
        (b"GET /x HTTP/1.0\nA: 1\nA: 2\n\n", ("GET", "/x", "HTTP/1.0", {"a": "2"})),
        (b"GET /x HTTP/1.1\r\nA:b:c\r\n\r\n", ("GET", "/x", "HTTP/1.1", {"a": "b:c"})),
    ],
)
def test_parse_request_head(head, expected):
    assert parse_request_head(head) == expected


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /\r\n\r\n", 400),
        (b"GET / FTP/1.1\r\n\r\n", 400),
        (b"GET  / HTTP/1.1 x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nnocolon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
    ],
)
def test_parse_request_head_refuses(head, status):
    with pytest.raises(BadRequest) as refused:
        parse_request_head(head)
    assert refused.value.status == status


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/v1/people/me/connections?personFields=names&pageToken=a%2Fb",
        "/calendar/v3/calendars/a%40b.c/events?",
        "/x?y=1#frag",
        "/x#frag?notquery",
        "/_fake/counts",
        "//double/slash?q=1",
        "http://127.0.0.1:1/absolute?form=1",
        "*",
        "",
    ],
)
def test_split_target_reads_a_target_as_urlsplit_does(target):
    split = urlsplit(target)
    assert split_target(target) == (split.path, split.query)


QUERIES = [
    "",
    "&",
    "a=1",
    "a=1&a=2&b=3",
    "a=&b",
    "=x&=",
    "a==b&c=d=e",
    "personFields=names%2CemailAddresses&pageSize=1000&requestSyncToken=true&alt=json",
    "syncToken=CKabc-_9&showDeleted=true&maxResults=250&alt=json",
    "q=a+b%2Bc&name+x=%E2%82%AC%zz%",
    "a=%ff%fe&%C3%A9=caf%C3%A9",
    "&&a=1&&",
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("keep_blank", [True, False])
def test_parse_query_reads_a_query_as_parse_qs_does(query, keep_blank):
    assert parse_query(query, keep_blank=keep_blank) == parse_qs(
        query, keep_blank_values=keep_blank
    )


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/", ()),
        ("", ()),
        ("/token", ("token",)),
        ("/v1/people/me/connections/", ("v1", "people", "me", "connections")),
        (
            "/calendar/v3/calendars/a%40b.c/events",
            ("calendar", "v3", "calendars", "a@b.c", "events"),
        ),
        ("/calendar/v3/calendars/a%2Fb/events", ("calendar", "v3", "calendars", "a/b", "events")),
        ("/x//y", ("x", "", "y")),
    ],
)
def test_path_segments_decode_each_segment_after_splitting(path, segments):
    assert path_segments(path) == segments
    parts = [unquote(part) for part in path.split("/")[1:]]
    assert path_segments(path) == tuple(parts[:-1] if parts and parts[-1] == "" else parts)
