"""The webhook receiver (SPEC 5): Google's push notifications in, the notified sync run here.

Why waitress: it is pure Python (no compiler, no event-loop framework to learn), has been
kept for over a decade by the Pylons project, and bounds everything the contract asks for
in its own settings. Connections are read by one asyncore loop, so a stalled client holds a
socket and a small buffer, never a thread; `threads` bounds the request workers,
`connection_limit` the open sockets, `channel_timeout` an idle connection's life,
`max_request_header_size` / `max_request_body_size` what one request may make us buffer, and
`backlog` the kernel's accept queue for bursts. uvicorn would need an ASGI rewrite and an
event loop for a handler that does one SQLite write.

How a notification flows:
- `sync` messages are acknowledged before any lookup (Google may send one before events.watch
  has returned, i.e. before the channel is stored) and change nothing.
- A known, unstopped channel whose token matches (compared in constant time) makes the user's
  calendar due now with trigger `webhook` in SQLite first (durable: if the receiver dies,
  run-due or the restarted receiver picks it up), then hands (user, calendar) to the
  Dispatcher. An unknown or stopped channel gets 404, a wrong token 403, and neither changes
  anything. A revoked user's calendar is not made due and nothing is dispatched, so its
  notification sends nothing to Google.
- The Dispatcher coalesces a user's notifications for `webhook_coalesce_seconds` (default 2 s)
  after the first, then runs ONE attempt through the Orchestrator (the same pipeline, gates
  and lease as run-due) that lists only the notified calendars' events. A notification that
  arrives while that user's sync runs queues one more sync after it, never a parallel one.
  `webhook_dispatch_workers` bound the concurrent syncs. A pair whose lease another process
  holds is retried shortly, then left to run-due.
- One log line per request that is not a health check, and per bad request waitress refuses
  itself (oversized headers, malformed HTTP); never a traceback, never a channel token.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

from syncctl.clock import Clock, from_iso, utcnow
from syncctl.config import Settings
from syncctl.model import AttemptRecord, Integration, Result, Trigger
from syncctl.policy import fresh_token
from syncctl.policy import gate as gate_policy
from syncctl.store import channels as channel_store
from syncctl.store import open_database, transaction
from syncctl.store import state as state_store
from syncctl.store import users as user_store

if TYPE_CHECKING:
    from syncctl.orchestrator import Orchestrator

log = logging.getLogger("syncctl.receiver")

DEFAULT_PORT = 8086
HEALTH_PATH = "/healthz"
# Server limits (see the module docstring). Google's notification headers are well under 2 KB
# and Calendar notifications have no body.
WORKER_THREADS = 4
CONNECTION_LIMIT = 512
CHANNEL_TIMEOUT_SECONDS = 10
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
BACKLOG = 1024
BUSY_RETRY_SECONDS = 1.0
BUSY_RETRIES = 30

LogLine = Callable[[str], None]
Calendars = frozenset[str] | None  # None: every calendar of the user (a recovered notification)


class ListenError(Exception):
    """The receiver cannot listen on the address it was given."""


# -- one notification -------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """How the receiver answered one notification, and why (for its log line)."""

    status: int
    reason: str
    channel_id: str | None = None
    resource_state: str | None = None
    user_id: str | None = None
    calendar_id: str | None = None
    dispatch: bool = False  # the calendar was made due: sync it


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
    if not changed:
        reason = "calendar not scheduled or revoked; ignored"
        return Receipt(200, reason, channel_id, state, row.user_id, row.calendar_id)
    return Receipt(
        200, "calendar sync due now", channel_id, state, row.user_id, row.calendar_id, True
    )


def handle_notification(
    db: sqlite_utils.Database, headers: Mapping[str, str], *, now: datetime
) -> int:
    """The HTTP status for a notification: 200 (sync, or a valid change), 400, 403 or 404."""
    return receive_notification(db, headers, now=now).status


def describe(receipt: Receipt) -> str:
    """One log line for a notification (header values sanitised; the token never appears)."""
    parts = [f"webhook {receipt.status}", clean(receipt.resource_state or "-")]
    if receipt.channel_id:
        parts.append(f"channel={clean(receipt.channel_id)}")
    if receipt.user_id:
        parts.append(f"user={receipt.user_id} calendar={receipt.calendar_id}")
    return " ".join(parts) + f": {receipt.reason}"


def clean(text: str, limit: int = 80) -> str:
    """A header value fit for one log line: printable, no spaces, at most `limit` characters."""
    printable = "".join(ch if ch.isprintable() and not ch.isspace() else "?" for ch in text)
    return printable[:limit]


# -- coalescing and dispatch ------------------------------------------------------------------


class PairBusyError(Exception):
    """Raised by a dispatch run when another process holds the pair: try again shortly."""


@dataclass
class _Pending:
    calendars: set[str] | None
    due: float
    tries: int = 0


class Dispatcher:
    """Coalesces notifications per user for `window` seconds; `workers` threads run the syncs."""

    def __init__(
        self,
        run: Callable[[str, Calendars], None],
        *,
        window: float,
        workers: int,
        log_line: LogLine,
        monotonic: Callable[[], float] = time.monotonic,
        busy_retry_seconds: float = BUSY_RETRY_SECONDS,
        busy_retries: int = BUSY_RETRIES,
    ) -> None:
        self._run = run
        self._window = window
        self._log_line = log_line
        self._monotonic = monotonic
        self._busy_retry = busy_retry_seconds
        self._busy_retries = busy_retries
        self._pending: dict[str, _Pending] = {}
        self._running: set[str] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"dispatch-{n}", daemon=True)
            for n in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def notify(self, user_id: str, calendar_id: str | None) -> None:
        """Queue a sync of the user's calendar (None: all of them) after the coalescing window."""
        with self._cond:
            pending = self._pending.get(user_id)
            if pending is None:
                calendars = None if calendar_id is None else {calendar_id}
                self._pending[user_id] = _Pending(calendars, self._monotonic() + self._window)
                self._cond.notify()
            elif pending.calendars is not None:
                if calendar_id is None:
                    pending.calendars = None
                else:
                    pending.calendars.add(calendar_id)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (or timeout); for tests and shutdown."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._running, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the syncs that are running; queued ones stay due in SQLite for later."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)

    def _next(self) -> tuple[str, _Pending] | None:
        with self._cond:
            while not self._stopping:
                now = self._monotonic()
                waiting = [(p.due, u) for u, p in self._pending.items() if u not in self._running]
                ready = [item for item in waiting if item[0] <= now]
                if ready:
                    user_id = min(ready)[1]
                    self._running.add(user_id)
                    return user_id, self._pending.pop(user_id)
                timeout = min(waiting)[0] - now if waiting else None
                self._cond.wait(timeout)
            return None

    def _work(self) -> None:
        while (item := self._next()) is not None:
            user_id, pending = item
            calendars = None if pending.calendars is None else frozenset(pending.calendars)
            retry = False
            try:
                self._run(user_id, calendars)
            except PairBusyError as busy:
                retry = pending.tries < self._busy_retries
                if not retry:
                    self._log_line(f"webhook sync {user_id}: {busy}; left to run-due")
            except Exception as exc:  # one line, never a traceback; the pair stays due
                self._log_line(f"webhook sync {user_id} failed: {type(exc).__name__}: {exc}")
            with self._cond:
                self._running.discard(user_id)
                if retry:
                    self._requeue(user_id, pending)
                self._cond.notify_all()

    def _requeue(self, user_id: str, pending: _Pending) -> None:
        due = self._monotonic() + self._busy_retry
        newer = self._pending.get(user_id)
        if newer is None:
            self._pending[user_id] = _Pending(pending.calendars, due, pending.tries + 1)
        elif newer.calendars is not None:
            newer.calendars = (
                None if pending.calendars is None else newer.calendars | pending.calendars
            )


def orchestrated_run(
    settings: Settings, *, clock: Clock, sleep: Callable[[float], None], log_line: LogLine
) -> tuple[Callable[[str, Calendars], None], Callable[[], None]]:
    """A dispatch run through the Orchestrator (trigger webhook), and the function closing it."""
    from syncctl.leases import PairBusy  # the Google stack loads only in the receiver
    from syncctl.orchestrator import Orchestrator, UserRemoved

    runner = Orchestrator(settings, clock=clock, sleep=sleep)

    def run(user_id: str, calendars: Calendars) -> None:
        try:
            record, *also = notified_sync(runner, user_id, calendars)
        except PairBusy as busy:
            raise PairBusyError(str(busy)) from busy
        except UserRemoved:
            log_line(f"webhook sync {user_id}: user removed; nothing synced")
            return
        which = "all calendars" if calendars is None else ",".join(sorted(calendars))
        outcome = record.result.value + (f" ({record.skip_reason})" if record.skip_reason else "")
        log_line(
            f"webhook sync {user_id} [{clean(which, 200)}]: {outcome},"
            f" {record.items_processed} items, {record.api_calls_made} calls,"
            f" {record.duration_ms} ms"
        )
        for extra in also:
            log_line(
                f"webhook sync {user_id}: {extra.integration_type.cli_name} on the fresh token:"
                f" {extra.result.value}, {extra.api_calls_made} calls"
            )

    return run, runner.close


def notified_sync(runner: Orchestrator, user_id: str, calendars: Calendars) -> list[AttemptRecord]:
    """The syncs a coalesced burst of notifications makes (the receiver's and the simulator's
    dispatch both call it): the calendar sync (trigger webhook, only the notified calendars),
    then, on the token it left fresh, the user's other pairs due soon anyway
    (policy/fresh_token.py)."""
    from syncctl.leases import PairBusy  # the Google stack loads only in the receiver
    from syncctl.orchestrator import UserRemoved

    record = runner.attempt(user_id, Integration.CALENDAR, Trigger.WEBHOOK, only=calendars)
    records = [record]
    if record.result is not Result.SUCCESS:
        return records
    for integration in _due_on_fresh_token(runner, user_id, skip=Integration.CALENDAR):
        try:
            records.append(runner.attempt(user_id, integration, Trigger.SCHEDULED))
        except (PairBusy, UserRemoved):  # another process syncs it now, or the user just went
            continue
    return records


def _due_on_fresh_token(
    runner: Orchestrator, user_id: str, *, skip: Integration
) -> list[Integration]:
    """The user's other pairs the gate lets through that fall due soon, while the token is fresh."""
    conn = runner.db().conn
    now = runner.clock()
    credentials = user_store.load_credentials(conn, user_id)
    if credentials is None or not credentials.token_expiry:
        return []
    valid_until = from_iso(credentials.token_expiry)
    due = []
    for integration in user_store.user_integrations(conn, user_id):
        if integration is skip:
            continue
        schedule = state_store.load_schedule(conn, user_id, integration)
        if schedule is None or not fresh_token.due_on_fresh_token(
            schedule.next_sync_at,
            schedule.current_frequency_seconds,
            now,
            runner.settings,
            token_valid_until=valid_until,
        ):
            continue
        state = state_store.load_pair_state(conn, user_id, integration)
        decision = gate_policy.gate(
            state.token_status, state.breaker, now, runner.settings, held=state.mass_delete_held
        )
        if decision.allowed and not decision.trial:
            due.append(integration)
    return due


# -- HTTP ---------------------------------------------------------------------------------


class _LoggedErrorTask(ErrorTask):
    """Waitress's own refusal (bad HTTP, headers or body too large), with our one log line."""

    def execute(self) -> None:
        error = self.request.error
        server = self.channel.server
        on_bad = getattr(server, "on_bad_request", None)
        if on_bad is not None:
            on_bad(f"webhook {error.code} {error.reason}: refused before reading the request")
        super().execute()


class _Channel(HTTPChannel):
    error_task_class = _LoggedErrorTask


class _Server(TcpWSGIServer):
    channel_class = _Channel
    on_bad_request: LogLine | None = None


class _OneLine(logging.Handler):
    """Waitress's own log records as one line each, without a traceback."""

    def __init__(self, log_line: LogLine) -> None:
        super().__init__(logging.WARNING)
        self._log_line = log_line

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "waitress.queue":  # "Task queue depth is N": the dispatcher's job
            return
        detail = ""
        if record.exc_info and record.exc_info[1] is not None:
            detail = f" ({type(record.exc_info[1]).__name__})"
        self._log_line(f"webhook server: {clean(record.getMessage(), 200)}{detail}")


class NotificationApp:
    """The WSGI application: /healthz, and notifications by POST to any path."""

    def __init__(
        self,
        db_path: Path,
        *,
        clock: Clock,
        log_line: LogLine,
        dispatch: Callable[[str, str], None] | None,
    ) -> None:
        self.db_path = db_path
        self.clock = clock
        self.log_line = log_line
        self.dispatch = dispatch
        self._local = threading.local()
        self._connections: list[sqlite_utils.Database] = []
        self._lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        if method in ("GET", "HEAD") and path == HEALTH_PATH:
            return _reply(start_response, 200, "ok\n")
        if method != "POST":
            self.log_line(f"webhook 404 {clean(method)} {clean(path)}: not a notification")
            return _reply(start_response, 404, "not found\n")
        try:
            receipt = receive_notification(self._db(), _headers(environ), now=self.clock())
        except (sqlite3.Error, OSError) as exc:  # a locked or broken database: Google retries
            receipt = Receipt(500, f"internal error ({type(exc).__name__})")
        except Exception as exc:  # never a traceback in the log, never a dropped connection
            receipt = Receipt(500, f"internal error ({type(exc).__name__})")
        self.log_line(describe(receipt))
        if receipt.dispatch and self.dispatch is not None and receipt.user_id:
            self.dispatch(receipt.user_id, receipt.calendar_id or "")
        return _reply(start_response, receipt.status, receipt.reason + "\n")

    def close(self) -> None:
        """Close every database connection the request threads opened."""
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()

    def _db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = open_database(self.db_path, create=False)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    return {
        key[5:].replace("_", "-"): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }


def _reply(start_response: Callable[..., Any], status: int, text: str) -> list[bytes]:
    body = text.encode()
    phrases = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
    start_response(
        f"{status} {phrases.get(status, 'Internal Server Error')}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class Receiver:
    """A bound receiver: `serve_forever()` in one thread, `shutdown()` from another."""

    def __init__(
        self,
        app: NotificationApp,
        server: _Server,
        dispatcher: Dispatcher | None,
        close_run: Callable[[], None] | None,
        handler: _OneLine,
    ) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self._server = server
        self._close_run = close_run
        self._handler = handler
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._closing = threading.Lock()  # the trigger is pulled only while it is still open
        self._closed = False

    @property
    def server_address(self) -> tuple[str, int]:
        """The (host, port) the receiver listens on."""
        return self._server.effective_host, int(self._server.effective_port)

    @property
    def url(self) -> str:
        """The base URL the receiver listens on."""
        host, port = self.server_address
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve until shutdown() (or KeyboardInterrupt), then close every connection."""
        try:
            while not self._stopping.is_set():
                self._server.asyncore.loop(
                    timeout=1.0, map=self._server._map, use_poll=True, count=1
                )
        finally:
            self._close()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop serving (from another thread) and wait until everything is closed."""
        self._stopping.set()
        with self._closing:
            if not self._closed:  # wake the loop now rather than at its next 1-second poll
                self._server.pull_trigger()
        self._stopped.wait(timeout)

    def _close(self) -> None:
        try:
            # In-flight requests finish first (their threads may still pull the trigger).
            self._server.task_dispatcher.shutdown(timeout=5)
            with self._closing:
                self._closed = True
            for channel in list(self._server._map.values()):
                channel.close()
            if self.dispatcher is not None:
                self.dispatcher.stop()
            if self._close_run is not None:
                self._close_run()
            self.app.close()
        finally:
            logging.getLogger("waitress").removeHandler(self._handler)
            self._stopped.set()


def make_receiver(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    clock: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    log_line: LogLine | None = None,
    dispatch: bool = True,
) -> Receiver:
    """A bound (not yet serving) receiver; with `dispatch`, it runs the notified syncs itself."""
    line = log_line or _stderr_line
    db_path = Path(settings.db_path)
    open_database(db_path, create=False).close()  # refuse a bad or missing one first
    try:  # the address first: a bad host or a taken port starts no dispatch threads
        adjustments = Adjustments(
            host=host,
            port=port,
            threads=WORKER_THREADS,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=CHANNEL_TIMEOUT_SECONDS,
            max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=MAX_BODY_BYTES,
            backlog=BACKLOG,
            log_socket_errors=False,
            asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
            ident="syncctl-webhook",
        )
    except ValueError as exc:  # waitress: "Invalid host/port specified."
        raise ListenError(f"cannot listen on {host}:{port}: not a usable address") from exc
    dispatcher = None
    close_run = None
    if dispatch:
        run, close_run = orchestrated_run(settings, clock=clock, sleep=sleep, log_line=line)
        dispatcher = Dispatcher(
            run,
            window=settings.webhook_coalesce_seconds,
            workers=settings.webhook_dispatch_workers,
            log_line=line,
        )
    app = NotificationApp(
        db_path, clock=clock, log_line=line, dispatch=dispatcher.notify if dispatcher else None
    )
    handler = _OneLine(line)
    waitress_log = logging.getLogger("waitress")
    waitress_log.addHandler(handler)
    waitress_log.propagate = False
    try:
        server = _Server(app, map={}, adj=adjustments)
    except (OSError, ValueError) as exc:
        waitress_log.removeHandler(handler)
        if dispatcher is not None:
            dispatcher.stop()
        if close_run is not None:
            close_run()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from exc
    server.on_bad_request = line
    receiver = Receiver(app, server, dispatcher, close_run, handler)
    if dispatcher is not None:
        _recover(db_path, clock(), dispatcher)
    return receiver


def _recover(db_path: Path, now: datetime, dispatcher: Dispatcher) -> None:
    """Queue the calendars a previous receiver was told about but did not sync (it died)."""
    db = open_database(db_path, create=False)
    try:
        for pair in state_store.due_pairs(db.conn, now):
            if pair.integration is Integration.CALENDAR and pair.trigger is Trigger.WEBHOOK:
                dispatcher.notify(pair.user_id, None)
    finally:
        db.close()


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    log_line: LogLine | None = None,
    on_ready: Callable[[Receiver], None] | None = None,
) -> None:
    """Receive Google's notifications on host:port until interrupted (KeyboardInterrupt)."""
    receiver = make_receiver(settings, host, port, log_line=log_line)
    if on_ready is not None:
        on_ready(receiver)
    receiver.serve_forever()


def _stderr_line(line: str) -> None:
    import sys

    sys.stderr.write(line + "\n")
    sys.stderr.flush()
