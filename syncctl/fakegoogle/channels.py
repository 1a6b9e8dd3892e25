"""Calendar watch channels and the background thread that POSTs their notifications."""

from __future__ import annotations

import http.client
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

NOTIFY_TIMEOUT_SECONDS = 5.0  # Google waits a few seconds too; a loaded receiver must not lose one
# A reused connection the receiver closed while it was idle fails before any answer: the
# notification is sent again once, on a new connection.
_CLOSED_WHILE_IDLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
Origin = tuple[str, str, int | None]


@dataclass(slots=True)
class Channel:
    """A web_hook channel on one calendar's events."""

    channel_id: str
    resource_id: str
    resource_uri: str
    token: str | None
    address: str
    expiration: datetime
    user_id: str
    calendar_id: str  # the resolved id (never `primary`)
    message_number: int = 0
    stopped: bool = False

    def live(self, now: datetime) -> bool:
        return not self.stopped and now < self.expiration

    def headers(self, state: str) -> dict[str, str]:
        """The X-Goog-* headers of the next notification (advances the message number)."""
        self.message_number += 1
        headers = {
            "X-Goog-Channel-ID": self.channel_id,
            "X-Goog-Message-Number": str(self.message_number),
            "X-Goog-Resource-ID": self.resource_id,
            "X-Goog-Resource-State": state,
            "X-Goog-Resource-URI": self.resource_uri,
            "X-Goog-Channel-Expiration": format_datetime(self.expiration, usegmt=True),
        }
        if self.token is not None:
            headers["X-Goog-Channel-Token"] = self.token
        return headers


@dataclass(frozen=True, slots=True)
class SentNotification:
    """A webhook POST the fake made; `status` is the receiver's HTTP status (None if it failed)."""

    channel_id: str
    user_id: str
    calendar_id: str
    address: str
    resource_state: str
    message_number: int
    headers: dict[str, str]
    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class _Delivery:
    channel_id: str
    user_id: str
    calendar_id: str
    address: str
    headers: dict[str, str]


class Notifier:
    """Delivers notifications in order from one daemon thread, so mutations never block."""

    def __init__(self, timeout: float = NOTIFY_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self.sent: list[SentNotification] = []
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._done = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        # One keep-alive connection per receiver, as Google's push delivery keeps them; never
        # through an http_proxy from the environment (receivers are often on loopback).
        self._connections: dict[Origin, http.client.HTTPConnection] = {}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="fakegoogle-notifier", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=self.timeout + 1)
            self._thread = None
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def submit(self, channel: Channel, state: str) -> None:
        """Queue one notification for a channel (call with the fake's lock held)."""
        delivery = _Delivery(
            channel.channel_id,
            channel.user_id,
            channel.calendar_id,
            channel.address,
            channel.headers(state),
        )
        with self._done:
            self._pending += 1
        self._queue.put(delivery)

    def wait_for(self, count: int, timeout: float) -> list[SentNotification]:
        """Block until at least `count` notifications were sent (or timeout); return them all."""
        with self._done:
            self._done.wait_for(lambda: len(self.sent) >= count, timeout)
            return list(self.sent)

    def flush(self, timeout: float) -> bool:
        """Block until every queued notification was attempted; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            status, error = self._post(delivery)
            record = SentNotification(
                channel_id=delivery.channel_id,
                user_id=delivery.user_id,
                calendar_id=delivery.calendar_id,
                address=delivery.address,
                resource_state=delivery.headers["X-Goog-Resource-State"],
                message_number=int(delivery.headers["X-Goog-Message-Number"]),
                headers=delivery.headers,
                status=status,
                error=error,
            )
            with self._done:
                self.sent.append(record)
                self._pending -= 1
                self._done.notify_all()

    def _post(self, delivery: _Delivery) -> tuple[int | None, str | None]:
        # The address was checked to be http(s) when the channel was created.
        target = urlsplit(delivery.address)
        origin = (target.scheme, target.hostname or "", target.port)
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        while True:
            connection = self._connections.pop(origin, None)
            reused = connection is not None
            if connection is None:
                connection = self._connect(origin)
            try:
                connection.request("POST", path, body=b"", headers=delivery.headers)
                response = connection.getresponse()
                response.read()
            except _CLOSED_WHILE_IDLE as exc:
                connection.close()
                if reused:
                    continue
                return None, f"{type(exc).__name__}: {exc}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                connection.close()
                return None, f"{type(exc).__name__}: {exc}"
            if response.will_close:
                connection.close()
            else:
                self._connections[origin] = connection
            return response.status, None

    def _connect(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)
