"""The receiver under hostile traffic, over real sockets: stalled clients, oversized headers,
clients that hang up mid-request, and fuzzed notifications (hypothesis).

The receiver runs in a thread on a free loopback port without dispatch (these tests are about
the HTTP edge; tests/test_receiver.py covers the syncs). benchmarks/bench_receiver_hostile.py
measures the same attacks at scale and prints figures.
"""

from __future__ import annotations

import http.client
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncctl.clock import to_iso, utcnow
from syncctl.config import Settings
from syncctl.model import UserCredentials
from syncctl.receiver import Receiver, make_receiver
from syncctl.store import channels as channel_store
from syncctl.store import open_database
from syncctl.store.channels import ChannelRow
from syncctl.users import add_user

USER = "erin"
CHANNEL = "chan-1"
TOKEN = "channel-token-for-tests-0123456789abcdef"
STATUSES = {200, 400, 403, 404}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Receiver, Path, list[str]]]:
    """One receiver for the module (hypothesis runs many examples against it)."""
    db_path = tmp_path_factory.mktemp("hostile") / "syncctl.db"
    db = open_database(db_path)
    now = utcnow()
    credentials = UserCredentials(client_id="cid", client_secret="s", refresh_token="r")
    add_user(db, Settings(), USER, credentials, now=now)
    channel_store.insert_channel(
        db.conn,
        ChannelRow(
            channel_id=CHANNEL,
            user_id=USER,
            calendar_id="primary@example.com",
            resource_id="res-1",
            token=TOKEN,
            address="https://hooks.example.com/calendar",
            expiration=to_iso(now + timedelta(days=6)),
            created_at=to_iso(now),
        ),
    )
    db.close()
    lines: list[str] = []
    receiver = make_receiver(
        Settings(db_path=db_path), "127.0.0.1", 0, log_line=lines.append, dispatch=False
    )
    thread = threading.Thread(target=receiver.serve_forever)
    thread.start()
    try:
        yield receiver, db_path, lines
    finally:
        receiver.shutdown()
        thread.join(timeout=10)


def request(
    receiver: Receiver, method: str, path: str, headers: dict[str, str] | None = None
) -> int:
    host, port = receiver.server_address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, body=b"" if method == "POST" else None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def valid_headers() -> dict[str, str]:
    return {
        "X-Goog-Channel-ID": CHANNEL,
        "X-Goog-Channel-Token": TOKEN,
        "X-Goog-Resource-State": "exists",
    }


def schedule(db_path: Path) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT * FROM sync_schedule ORDER BY integration_type").fetchall()
    finally:
        conn.close()


def stalled(receiver: Receiver, count: int) -> list[socket.socket]:
    """Connections that sent half a request line and headers, then nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(receiver.server_address, timeout=5)
        sock.sendall(b"POST /calendar HTTP/1.1\r\nHost: x\r\nX-Goog-Channel-ID: ")
        sockets.append(sock)
    return sockets


def test_a_valid_notification_is_answered_within_a_second_while_100_connections_stall(served):
    receiver, _, _ = served
    held = stalled(receiver, 100)
    try:
        started = time.monotonic()
        status = request(receiver, "POST", "/calendar", valid_headers())
        elapsed = time.monotonic() - started
        health = request(receiver, "GET", "/healthz")
        assert request(receiver, "HEAD", "/healthz") == 200
    finally:
        for sock in held:
            sock.close()
    assert (status, health) == (200, 200)
    assert elapsed < 1.0


def test_oversized_headers_are_refused_with_431_and_one_line(served):
    receiver, db_path, lines = served
    before = schedule(db_path)
    mark = len(lines)

    status = request(receiver, "POST", "/calendar", valid_headers() | {"X-Pad": "a" * 60_000})

    assert status == 431
    assert schedule(db_path) == before
    new = lines[mark:]
    assert len(new) == 1 and new[0].startswith("webhook 431 ")
    assert "Traceback" not in new[0]


def test_a_client_that_hangs_up_mid_request_leaves_no_traceback(served):
    receiver, _, lines = served
    mark = len(lines)
    for _ in range(5):
        sock = socket.create_connection(receiver.server_address, timeout=5)
        sock.sendall(b"POST /calendar HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabc")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # an RST, not a FIN

    assert request(receiver, "GET", "/healthz") == 200
    assert not any("Traceback" in line or "\n" in line for line in lines[mark:])


def test_other_methods_and_paths_get_404_with_one_line(served):
    receiver, _, lines = served
    mark = len(lines)

    assert request(receiver, "GET", "/calendar") == 404
    assert request(receiver, "PUT", "/healthz") == 404

    assert len(lines) - mark == 2
    assert all(line.startswith("webhook 404 ") for line in lines[mark:])


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=300,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    channel_id=st.one_of(st.none(), st.just(CHANNEL), header_text),
    token=st.one_of(st.none(), st.just(TOKEN), header_text),
    state=st.one_of(st.none(), st.sampled_from(["sync", "exists", "not_exists"]), header_text),
    path=st.text(alphabet="abc/%?=&.-_~", max_size=40).map(lambda p: "/" + p),
)
def test_fuzzed_notifications_get_a_documented_status_and_only_valid_ones_change_state(
    served, channel_id, token, state, path
):
    receiver, db_path, lines = served
    headers = {}
    for name, value in (
        ("X-Goog-Channel-ID", channel_id),
        ("X-Goog-Channel-Token", token),
        ("X-Goog-Resource-State", state),
    ):
        if value is not None:
            headers[name] = value.strip() or "x"  # http.client refuses empty header values
    before = schedule(db_path)
    mark = len(lines)

    status = request(
        receiver,
        "POST",
        path,
        {k: v.encode("latin-1").decode("latin-1") for k, v in headers.items()},
    )

    assert status in STATUSES
    valid = (
        headers.get("X-Goog-Channel-ID", "").strip() == CHANNEL
        and headers.get("X-Goog-Channel-Token") == TOKEN
        and headers.get("X-Goog-Resource-State", "").strip().lower() != "sync"
    )
    if not valid:
        assert schedule(db_path) == before
    assert len(lines) - mark == 1
    assert TOKEN not in lines[-1] and "Traceback" not in lines[-1]


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_fuzzed_raw_bytes_never_crash_the_receiver(served, raw):
    receiver, db_path, _ = served
    before = schedule(db_path)
    sock = socket.create_connection(receiver.server_address, timeout=5)
    try:
        sock.sendall(raw + b"\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        try:
            while sock.recv(4096):
                pass
        except (TimeoutError, ConnectionResetError):
            pass
    finally:
        sock.close()
    assert schedule(db_path) == before
    assert request(receiver, "GET", "/healthz") == 200
