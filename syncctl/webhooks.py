"""Calendar push notifications (SPEC 5): watch channels kept open, and a receiver for Google.

Choices where the contract is silent:
- A channel is *current* when it is not stopped, points at today's `SYNCCTL_WEBHOOK_URL`, and
  expires after `now + webhook_renew_before_seconds`. A calendar without a current channel gets
  a new one; the channel it replaces (expiring, or aimed at an old address) is stopped only
  after the new one is stored, so pushes overlap rather than pause. If opening fails the old
  channel is kept: it still works until it expires.
- Expired channels are marked stopped without a Google call (Google has already forgotten them).
  A stop that fails transiently is retried at the next maintenance; one Google refuses for good
  is forgotten. Without a webhook URL, maintenance stops every open channel of the user.
- `all_calendars_covered` asks for a channel on *every* mirrored calendar that lasts past a
  horizon (the orchestrator passes the next sync time), so relaxed polling never outlives push.
- The receiver acknowledges `X-Goog-Resource-State: sync` before looking the channel up: Google
  may send it before events.watch has returned, i.e. before the channel is stored. It changes
  nothing. Any other state (`exists`, `not_exists`) from a known, unstopped channel with the
  right token makes the user's calendar due now. Log lines never show the channel token.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sqlite3
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import sqlite_utils

from syncctl.clock import Clock, from_iso, to_iso, utcnow
from syncctl.config import Settings
from syncctl.google.errors import GoogleError, QuotaError, TransientError
from syncctl.model import Integration, Trigger
from syncctl.policy import gate as gate_policy
from syncctl.store import channels as channel_store
from syncctl.store import open_database, transaction
from syncctl.store import state as state_store
from syncctl.store.channels import ChannelRow

if TYPE_CHECKING:
    from syncctl.google.session import GoogleSession

log = logging.getLogger("syncctl.webhooks")

CHANNEL_TTL_SECONDS = 604800  # Google's default and the longest a Calendar channel is known to live
TOKEN_BYTES = 32
MAX_BODY_BYTES = 64 * 1024  # Calendar notifications have no body; anything large is not Google
DEFAULT_PORT = 8086
HEALTH_PATH = "/healthz"


class ListenError(Exception):
    """The receiver cannot listen on the address it was given."""


@dataclass
class ChannelReport:
    """What one pass over a user's channels did; errors are logged and listed, never raised."""

    opened: list[str] = field(default_factory=list)  # calendar ids that got a new channel
    renewed: list[str] = field(default_factory=list)  # of those, ids whose old channel was retired
    stopped: list[str] = field(default_factory=list)  # channel ids stopped at Google
    forgotten: list[str] = field(default_factory=list)  # channel ids marked stopped, no call
    errors: list[str] = field(default_factory=list)
    covered: bool = False  # every calendar has a channel lasting past the polling horizon

    @property
    def ok(self) -> bool:
        """Whether every Google call of the pass succeeded."""
        return not self.errors


# -- keeping channels open --------------------------------------------------------------------


def maintain_channels(
    db: sqlite_utils.Database,
    session: GoogleSession,
    user_id: str,
    *,
    settings: Settings,
    now: datetime,
) -> ChannelReport:
    """Give each of a user's calendars a current watch channel and stop the ones not needed."""
    report = ChannelReport()
    address = settings.webhook_url
    calendars = set(channel_store.calendar_ids(db.conn, user_id))
    renew_at = now + timedelta(seconds=settings.webhook_renew_before_seconds)
    current: dict[str, ChannelRow] = {}
    retiring: dict[str, list[ChannelRow]] = {}
    unwanted: list[ChannelRow] = []
    expired: list[str] = []
    for row in channel_store.open_channels(db.conn, user_id):  # oldest expiration first
        expiration = from_iso(row.expiration)
        if expiration <= now:
            expired.append(row.channel_id)
        elif address is None or row.calendar_id not in calendars:
            unwanted.append(row)
        elif row.address != address or expiration <= renew_at:
            retiring.setdefault(row.calendar_id, []).append(row)
        else:
            if row.calendar_id in current:  # a duplicate: keep the one that lasts longest
                unwanted.append(current[row.calendar_id])
            current[row.calendar_id] = row
    if expired:
        with transaction(db) as tx:
            channel_store.mark_stopped(tx, expired, now=now)
        report.forgotten.extend(expired)
    if address is not None:
        for calendar_id in sorted(calendars - current.keys()):
            if _open_channel(db, session, user_id, calendar_id, address, now, report):
                report.opened.append(calendar_id)
                if calendar_id in retiring:
                    report.renewed.append(calendar_id)
                    unwanted.extend(retiring.pop(calendar_id))
    for row in unwanted:
        _stop_channel(db, session, row, now, report, retry_later=True)
    horizon = now + timedelta(seconds=settings.webhook_safety_interval_seconds)
    report.covered = address is not None and all_calendars_covered(
        db.conn, user_id, now, until=horizon
    )
    return report


def all_calendars_covered(
    conn: sqlite3.Connection, user_id: str, now: datetime, *, until: datetime | None = None
) -> bool:
    """Whether the user has calendars and each has an unstopped channel live past `until`."""
    if not channel_store.calendar_ids(conn, user_id):
        return False
    return channel_store.uncovered_calendar_count(conn, user_id, until or now) == 0


def stop_user_channels(
    db: sqlite_utils.Database, session: GoogleSession | None, user_id: str, now: datetime
) -> ChannelReport:
    """Stop every open channel of a user (at Google when a session is given) and forget them."""
    report = ChannelReport()
    for row in channel_store.open_channels(db.conn, user_id):
        if session is None or from_iso(row.expiration) <= now:
            with transaction(db) as tx:
                channel_store.mark_stopped(tx, [row.channel_id], now=now)
            report.forgotten.append(row.channel_id)
        else:
            _stop_channel(db, session, row, now, report, retry_later=False)
    return report


def _open_channel(
    db: sqlite_utils.Database,
    session: GoogleSession,
    user_id: str,
    calendar_id: str,
    address: str,
    now: datetime,
    report: ChannelReport,
) -> bool:
    channel_id = str(uuid.uuid4())
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        reply = session.watch_events(
            calendar_id,
            channel_id=channel_id,
            address=address,
            token=token,
            ttl_seconds=CHANNEL_TTL_SECONDS,
        )
    except GoogleError as error:
        _record_error(report, f"cannot watch calendar {calendar_id} of {user_id}: {error}")
        return False
    resource_id = reply.get("resourceId")
    if not isinstance(resource_id, str) or not resource_id:
        _record_error(report, f"watch of calendar {calendar_id} of {user_id}: no resourceId")
        return False
    row = ChannelRow(
        channel_id=channel_id,
        user_id=user_id,
        calendar_id=calendar_id,
        resource_id=resource_id,
        token=token,
        address=address,
        expiration=to_iso(_expiration(reply.get("expiration"), now)),
        created_at=to_iso(now),
    )
    # Stored at once, one channel per transaction: a crash later in the pass leaves no orphan.
    with transaction(db) as tx:
        channel_store.insert_channel(tx, row)
    return True


def _expiration(value: object, now: datetime) -> datetime:
    """The channel's expiration from Google's Unix milliseconds (a string or int)."""
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError, OSError):
        return now + timedelta(seconds=CHANNEL_TTL_SECONDS)


def _stop_channel(
    db: sqlite_utils.Database,
    session: GoogleSession,
    row: ChannelRow,
    now: datetime,
    report: ChannelReport,
    *,
    retry_later: bool,
) -> None:
    try:
        session.stop_channel(row.channel_id, row.resource_id)
    except (TransientError, QuotaError) as error:
        _record_error(report, f"cannot stop channel {row.channel_id}: {error}")
        if retry_later:
            return
        report.forgotten.append(row.channel_id)
    except GoogleError as error:  # Google refuses for good: nothing more to do than forget it
        _record_error(report, f"cannot stop channel {row.channel_id}: {error}")
        report.forgotten.append(row.channel_id)
    else:
        report.stopped.append(row.channel_id)
    with transaction(db) as tx:
        channel_store.mark_stopped(tx, [row.channel_id], now=now)


def _record_error(report: ChannelReport, message: str) -> None:
    log.warning("webhook channels: %s", message)
    report.errors.append(message)


# -- receiving notifications ------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """How the receiver answered one notification, and why (for its log line)."""

    status: int
    reason: str
    channel_id: str | None = None
    resource_state: str | None = None
    user_id: str | None = None
    calendar_id: str | None = None


def receive_notification(
    db: sqlite_utils.Database, headers: Mapping[str, str], *, now: datetime
) -> Receipt:
    """Check a notification's channel and token and, if valid, make its calendar due now."""
    found = {key.lower(): value for key, value in headers.items()}
    channel_id = found.get("x-goog-channel-id", "").strip()
    state = found.get("x-goog-resource-state", "").strip().lower() or None
    if not channel_id:
        return Receipt(400, "no X-Goog-Channel-ID", resource_state=state)
    if state == "sync":
        return Receipt(200, "sync message acknowledged", channel_id, state)
    row = channel_store.load_channel(db.conn, channel_id)
    if row is None:
        return Receipt(404, "unknown channel", channel_id, state)
    if row.stopped_at is not None:
        return Receipt(404, "channel was stopped", channel_id, state, row.user_id, row.calendar_id)
    token = found.get("x-goog-channel-token")
    if token is None or not hmac.compare_digest(token.encode(), row.token.encode()):
        return Receipt(403, "wrong channel token", channel_id, state, row.user_id, row.calendar_id)
    with transaction(db) as tx:  # the gate decides (policy.gate); the store only saves
        calendar = Integration.CALENDAR
        status = state_store.load_token_status(tx, row.user_id, calendar)
        schedule = state_store.load_schedule(tx, row.user_id, calendar)
        due = gate_policy.on_notification(schedule, status, now)
        if due is not None:
            state_store.save_schedule_due(tx, row.user_id, calendar, due, Trigger.WEBHOOK)
        changed = due is not None
    reason = "calendar sync due now" if changed else "calendar not scheduled or revoked; ignored"
    return Receipt(200, reason, channel_id, state, row.user_id, row.calendar_id)


def handle_notification(
    db: sqlite_utils.Database, headers: Mapping[str, str], *, now: datetime
) -> int:
    """The HTTP status for a notification: 200 (sync, or a valid change), 400, 403 or 404."""
    return receive_notification(db, headers, now=now).status


def describe(receipt: Receipt) -> str:
    """One log line for a notification (header values sanitised; the token never appears)."""
    parts = [f"webhook {receipt.status}", _clean(receipt.resource_state or "-")]
    if receipt.channel_id:
        parts.append(f"channel={_clean(receipt.channel_id)}")
    if receipt.user_id:
        parts.append(f"user={receipt.user_id} calendar={receipt.calendar_id}")
    return " ".join(parts) + f": {receipt.reason}"


def _clean(text: str, limit: int = 80) -> str:
    printable = "".join(ch if ch.isprintable() and not ch.isspace() else "?" for ch in text)
    return printable[:limit]


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class WebhookServer(ThreadingHTTPServer):
    """The receiver: a threading HTTP server whose request threads each open their own database."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        db_path: Path,
        *,
        clock: Clock = utcnow,
        log_line: Callable[[str], None] = _stderr_line,
    ) -> None:
        self.db_path = db_path
        self.clock = clock
        self.log_line = log_line
        super().__init__(address, _NotificationHandler)

    @property
    def url(self) -> str:
        """The base URL the server listens on."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _NotificationHandler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"
    server_version = "syncctl-webhook"
    _db: sqlite_utils.Database | None = None

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = self._content_length()
        if length is None:
            self.close_connection = True
            self._reply(413, "body too large\n")
            return
        self.rfile.read(length)
        try:
            receipt = receive_notification(
                self._database(), dict(self.headers.items()), now=self.server.clock()
            )
        except Exception:  # a locked or broken database: 500 makes Google retry later
            log.exception("webhook notification could not be handled")
            receipt = Receipt(500, "internal error")
        self.server.log_line(describe(receipt))  # before the reply, so lines keep Google's order
        self._reply(receipt.status, receipt.reason + "\n")

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] == HEALTH_PATH:
            self._reply(200, "ok\n")
        else:
            self._reply(404, "not found\n")

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: do_POST writes one line of its own per notification."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.server.log_line("webhook: " + (format % args))

    def _content_length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return max(0, length) if length <= MAX_BODY_BYTES else None

    def _database(self) -> sqlite_utils.Database:
        # One connection per handler, i.e. per connection thread; closed in finish().
        if self._db is None:
            self._db = open_database(self.server.db_path, create=False)
        return self._db

    def _reply(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def make_server(
    db_path: Path | str,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    clock: Clock = utcnow,
    log_line: Callable[[str], None] = _stderr_line,
) -> WebhookServer:
    """A bound (not yet serving) receiver; the database is opened once first to check it."""
    open_database(db_path, create=False).close()
    try:
        return WebhookServer((host, port), Path(db_path), clock=clock, log_line=log_line)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def serve(
    db_path: Path | str,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    clock: Clock = utcnow,
    log_line: Callable[[str], None] = _stderr_line,
    on_ready: Callable[[WebhookServer], None] | None = None,
) -> None:
    """Receive Google's notifications on host:port until interrupted (KeyboardInterrupt)."""
    server = make_server(db_path, host, port, clock=clock, log_line=log_line)
    try:
        if on_ready is not None:
            on_ready(server)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
