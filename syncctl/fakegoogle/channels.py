"""Calendar watch channels and the background thread that POSTs their notifications."""

from __future__ import annotations

import queue
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

NOTIFY_TIMEOUT_SECONDS = 5.0  # Google waits a few seconds too; a loaded receiver must not lose one


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
        # Loopback receivers must not be routed through an http_proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

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
        request = urllib.request.Request(  # noqa: S310
            delivery.address, data=b"", method="POST", headers=delivery.headers
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, None
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (OSError, ValueError) as exc:
            return None, type(exc).__name__ + ": " + str(getattr(exc, "reason", exc))
