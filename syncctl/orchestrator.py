"""The one pipeline every sync goes through, scheduled or manual.

    due? -> token health -> circuit breaker -> sync -> record metrics -> update schedule

Gate order: a revoked grant is checked first (no Google call at all), then the breaker (an open
breaker makes no Google call either, not even a token refresh), then the token is refreshed if it
is missing or about to expire, then the engine runs. Every attempt ends in exactly one
transaction that writes its `sync_metrics` row together with the new breaker, schedule, token
health and any reconnect notice, so the record of an attempt is never half written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

import sqlite_utils

from syncctl import webhooks
from syncctl.clock import Clock, from_iso, to_iso, utcnow
from syncctl.config import Settings
from syncctl.engines import SyncOutcome
from syncctl.engines.calendar import sync_calendar
from syncctl.engines.contacts import sync_contacts
from syncctl.google.errors import AuthError, GoogleError, UnexpectedResponse
from syncctl.google.session import GoogleSession
from syncctl.model import (
    RECONNECT_NOTICE,
    BreakerState,
    ErrorClass,
    Integration,
    Result,
    SkipReason,
    SyncType,
    TokenStatus,
    Trigger,
)
from syncctl.policy import breaker as breaker_policy
from syncctl.policy import routing, savings, token_health
from syncctl.policy import schedule as schedule_policy
from syncctl.policy.schedule import Outcome
from syncctl.runlock import run_due_lock
from syncctl.store import open_database, transaction
from syncctl.store import state as state_store
from syncctl.store import users as user_store
from syncctl.store.metrics import AttemptRecord, average_calls, insert_attempt
from syncctl.store.sync_tokens import has_sync_tokens

log = logging.getLogger("syncctl.orchestrator")

Engine = Callable[..., SyncOutcome]
ENGINES: dict[Integration, Engine] = {
    Integration.CONTACTS: sync_contacts,
    Integration.CALENDAR: sync_calendar,
}
CONSUMING_OUTCOMES = {
    Outcome.CHANGED,
    Outcome.UNCHANGED,
    Outcome.INVALID_TOKEN,
    Outcome.AUTH_FAILURE,
}


class UserRemoved(LookupError):
    """The user of a due pair was removed before its attempt started."""


@dataclass(frozen=True)
class PlannedAttempt:
    """What `run-due --dry-run` says about one due pair."""

    user_id: str
    integration: Integration
    trigger: Trigger
    due_since: str
    action: str  # "sync" or "skip"
    reason: str


@dataclass
class RunSummary:
    """What one `run-due` did."""

    attempts: list[AttemptRecord] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for a in self.attempts if a.result == Result.FAILURE)

    def count(self, result: Result) -> int:
        return sum(1 for a in self.attempts if a.result == result)


@dataclass(frozen=True)
class _Verdict:
    """How an attempt ended, before it is written."""

    result: Result
    skip_reason: SkipReason | None = None
    outcome: SyncOutcome | None = None
    error: GoogleError | None = None
    channel_live: bool = False  # every calendar of the user has a live watch channel

    @property
    def error_class(self) -> ErrorClass | None:
        return self.error.error_class if self.error else None

    @property
    def error_message(self) -> str | None:
        return str(self.error) if self.error else None

    @property
    def ending(self) -> Outcome:
        return routing.outcome_of(
            self.result,
            changed=bool(self.outcome and self.outcome.changed),
            skip_reason=self.skip_reason,
            error_class=self.error_class,
        )

    @staticmethod
    def from_error(error: GoogleError) -> _Verdict:
        if isinstance(error, AuthError) and error.revoked:  # invalid_grant: skip, not failure
            return _Verdict(Result.SKIPPED, SkipReason.INVALID_TOKEN, error=error)
        return _Verdict(Result.FAILURE, error=error)


class Orchestrator:
    """Runs attempts through the pipeline; thread-safe, one SQLite connection per thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        engines: dict[Integration, Engine] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.engines = engines or ENGINES
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite_utils.Database] = {}
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------

    def db(self) -> sqlite_utils.Database:
        """This thread's connection to the database."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = open_database(self.settings.db_path)
            self._local.db = db
            with self._lock:
                self._connections[threading.current_thread()] = db
        return db

    def close(self) -> None:
        """Close every connection this orchestrator opened."""
        with self._lock:
            for db in self._connections.values():
                db.close()
            self._connections.clear()
        self._local = threading.local()

    def _close_finished_threads(self) -> None:
        # Each run_due has its own pool threads; without this a long-lived orchestrator (the
        # simulator, a daemon) would keep one open connection per pool thread it ever had.
        with self._lock:
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()

    # -- one attempt -------------------------------------------------------------------------

    def attempt(
        self, user_id: str, integration: Integration, trigger: Trigger, *, full: bool = False
    ) -> AttemptRecord:
        """Run one (user, integration) through every gate and, if allowed, the sync."""
        db = self.db()
        conn = db.conn
        now = self.clock()
        started = time.monotonic()
        status = state_store.load_token_status(conn, user_id, integration)
        mark = state_store.schedule_mark(conn, user_id, integration)
        if not token_health.may_call_google(status):
            verdict = _Verdict(Result.SKIPPED, SkipReason.INVALID_TOKEN)
            return self._finish(user_id, integration, trigger, now, started, verdict, mark)
        admission = breaker_policy.allow_attempt(
            state_store.load_breaker(conn, user_id, integration), now, self.settings
        )
        if admission.trial:
            # The half-open lease is decided again under the write lock and stored before the
            # trial runs, so two processes (run-due and a manual sync) never both run a trial.
            with transaction(db) as tx:
                admission = breaker_policy.allow_attempt(
                    state_store.load_breaker(tx, user_id, integration), now, self.settings
                )
                if admission.trial:
                    state_store.save_breaker(tx, user_id, integration, admission.record)
        if not admission.allowed:
            verdict = _Verdict(Result.SKIPPED, SkipReason.CIRCUIT_OPEN)
            return self._finish(user_id, integration, trigger, now, started, verdict, mark)
        credentials = user_store.load_credentials(db, user_id)
        if credentials is None:
            raise UserRemoved(f"user {user_id!r} has no credentials")
        # A half-open trial is one probe of a service that kept failing: no retries, so an
        # open breaker costs one request an hour rather than a full retry burst.
        settings = (
            replace(self.settings, retry_max_attempts=1) if admission.trial else self.settings
        )
        session = GoogleSession(credentials, settings, now=self.clock, sleep=self.sleep)
        try:
            verdict = self._run_session(db, session, user_id, integration, full=full)
            return self._finish(
                user_id,
                integration,
                trigger,
                now,
                started,
                verdict,
                mark,
                session=session,
                breaker=admission.record,
            )
        finally:
            # The discovery client keeps reference cycles: without this the sockets (and the
            # fake's or Google's connection slots) stay open until the garbage collector runs.
            session.close()

    def _run_session(
        self,
        db: sqlite_utils.Database,
        session: GoogleSession,
        user_id: str,
        integration: Integration,
        *,
        full: bool,
    ) -> _Verdict:
        credentials = session.credentials
        try:
            expiry = from_iso(credentials.token_expiry) if credentials.token_expiry else None
            if token_health.needs_refresh(
                credentials.access_token, expiry, self.clock(), self.settings
            ):
                session.refresh_token()
            outcome = self.engines[integration](db, session, user_id, full=full, now=self.clock)
            channels = None
            if integration is Integration.CALENDAR:  # on the same session: its calls count
                channels = webhooks.maintain_channels(
                    db, session, user_id, settings=self.settings, now=self.clock()
                )
        except GoogleError as error:
            return _Verdict.from_error(error)
        except Exception as exc:  # a bug or a local fault must not stop the rest of the run
            log.exception("sync of %s for %s failed unexpectedly", integration.cli_name, user_id)
            return _Verdict.from_error(UnexpectedResponse(f"unexpected {type(exc).__name__}"))
        return _Verdict(
            Result.SUCCESS, outcome=outcome, channel_live=bool(channels and channels.covered)
        )

    def _finish(
        self,
        user_id: str,
        integration: Integration,
        trigger: Trigger,
        now: datetime,
        started: float,
        verdict: _Verdict,
        mark: state_store.ScheduleMark | None,
        *,
        session: GoogleSession | None = None,
        breaker: breaker_policy.BreakerRecord | None = None,
    ) -> AttemptRecord:
        db = self.db()
        conn = db.conn
        calls_made = session.calls_made if session else 0
        schedule = state_store.load_schedule(conn, user_id, integration)
        ending = verdict.ending
        trial = breaker is not None and breaker.state == BreakerState.HALF_OPEN
        saved = savings.estimate_saved(
            ending,
            integration=integration,
            trigger=trigger,
            schedule=schedule,
            now=now,
            settings=self.settings,
            recent_calls_per_sync=average_calls(
                conn, user_id, integration, Result.SUCCESS, SyncType.INCREMENTAL
            ),
            recent_calls_per_failure=average_calls(conn, user_id, integration, Result.FAILURE),
            calls_made=calls_made,
            breaker_trial=trial,
        )
        outcome = verdict.outcome
        record = AttemptRecord(
            user_id=user_id,
            integration_type=integration,
            trigger=trigger,
            result=verdict.result,
            created_at=to_iso(now),
            sync_type=outcome.sync_type if outcome else None,
            skip_reason=verdict.skip_reason,
            duration_ms=int((time.monotonic() - started) * 1000),
            items_processed=outcome.items_processed if outcome else 0,
            items_added=outcome.added if outcome else 0,
            items_updated=outcome.updated if outcome else 0,
            items_deleted=outcome.deleted if outcome else 0,
            full_resync=bool(outcome and outcome.full_resync),
            breaker_trial=trial,
            api_calls_made=calls_made,
            api_calls_saved=saved.calls,
            saved_by=saved.saved_by,
            error_class=verdict.error_class,
            error_message=verdict.error_message,
        )
        with transaction(db) as tx:
            insert_attempt(tx, record)
            if integration not in user_store.user_integrations(db, user_id):
                # Removed while the attempt ran: the calls made are recorded, but the pair
                # state that `user remove` deleted is not brought back.
                return record
            if session is not None:
                _save_refreshed_token(tx, user_id, session)
            self._record_token_health(tx, user_id, integration, verdict, now)
            self._record_breaker(tx, user_id, integration, verdict, now, breaker)
            if schedule is not None and trigger != Trigger.MANUAL:
                updated = schedule_policy.update_schedule(
                    schedule,
                    ending,
                    integration=integration,
                    trigger=trigger,
                    now=now,
                    settings=self.settings,
                    retry_after=verdict.error.retry_after if verdict.error else None,
                    channel_live=verdict.channel_live,
                )
                # A webhook trigger stays pending until an attempt moves the pair on; one that
                # arrived while this attempt ran keeps the pair due for another sync.
                consumed = ending in CONSUMING_OUTCOMES
                notified = state_store.schedule_mark(tx, user_id, integration)
                if notified and notified != mark and notified.pending_trigger == Trigger.WEBHOOK:
                    updated = replace(updated, next_sync_at=min(updated.next_sync_at, notified.due))
                    consumed = False
                if updated != schedule or consumed:
                    state_store.save_schedule(
                        tx, user_id, integration, updated, keep_pending=not consumed
                    )
        return record

    def _record_token_health(
        self, tx, user_id: str, integration: Integration, verdict: _Verdict, now: datetime
    ) -> None:
        if verdict.result == Result.SUCCESS:
            state_store.save_token_health(tx, user_id, [integration], TokenStatus.VALID, now=now)
        elif verdict.error_class == ErrorClass.AUTH:
            # invalid_grant revokes the whole grant; a 401 a refresh cannot cure or a missing
            # scope revokes this pair only. Either way only a reconnect cures it.
            whole_grant = isinstance(verdict.error, AuthError) and verdict.error.revoked
            db = self.db()
            revoked = user_store.user_integrations(db, user_id) if whole_grant else [integration]
            self.mark_revoked(tx, user_id, revoked, verdict.error_message or "auth error", now)

    def mark_revoked(
        self, tx, user_id: str, integrations: Sequence[Integration], message: str, now: datetime
    ) -> None:
        """Store `revoked` for a user's integrations and leave one reconnect notice."""
        state_store.save_token_health(
            tx, user_id, integrations, TokenStatus.REVOKED, now=now, error_message=message
        )
        self._notify_reconnect(tx, user_id, message, now)

    @staticmethod
    def _notify_reconnect(tx, user_id: str, message: str, now: datetime) -> None:
        if not state_store.has_open_notice(tx, user_id, RECONNECT_NOTICE):
            state_store.add_notice(
                tx,
                user_id,
                RECONNECT_NOTICE,
                f"{message}; run `syncctl user add {user_id} --credentials FILE` to reconnect",
                now=now,
            )

    def _record_breaker(
        self,
        tx,
        user_id: str,
        integration: Integration,
        verdict: _Verdict,
        now: datetime,
        breaker: breaker_policy.BreakerRecord | None,
    ) -> None:
        if breaker is None:  # gated before the breaker admitted anything: nothing changes
            return
        if verdict.result == Result.SUCCESS:
            updated = breaker_policy.on_success(breaker, now)
        elif verdict.error_class and routing.route(verdict.error_class).counts_for_breaker:
            reason = f"{routing.route(verdict.error_class).reason}: {verdict.error_message}"
            updated = breaker_policy.on_failure(breaker, now, reason, self.settings)
        else:
            updated = breaker
        state_store.save_breaker(tx, user_id, integration, updated)

    # -- token health checks -----------------------------------------------------------------

    def check_token(self, user_id: str) -> tuple[TokenStatus, str | None]:
        """Verify a user's grant now with a refresh and store the verdict.

        A revoked grant is not retried (no Google call until the user is reconnected); a
        transient failure leaves the stored status as it was and returns it with the error.
        """
        db = self.db()
        integrations = user_store.user_integrations(db, user_id)
        now = self.clock()
        statuses = {state_store.load_token_status(db.conn, user_id, i) for i in integrations}
        if TokenStatus.REVOKED in statuses:
            return TokenStatus.REVOKED, "revoked; reconnect with `syncctl user add`"
        credentials = user_store.load_credentials(db, user_id)
        if credentials is None or not integrations:
            return TokenStatus.UNKNOWN, "no credentials or no integrations"
        with GoogleSession(credentials, self.settings, now=self.clock, sleep=self.sleep) as session:
            try:
                session.refresh_token()
            except AuthError as error:
                with transaction(db) as tx:
                    self.mark_revoked(tx, user_id, integrations, str(error), now)
                return TokenStatus.REVOKED, str(error)
            except GoogleError as error:
                current = statuses.pop() if len(statuses) == 1 else TokenStatus.UNKNOWN
                return current, f"could not check: {error}"
        with transaction(db) as tx:
            _save_refreshed_token(tx, user_id, session)
            state_store.save_token_health(tx, user_id, integrations, TokenStatus.VALID, now=now)
        return TokenStatus.VALID, None

    def check_tokens(
        self, user_ids: Sequence[str], *, concurrency: int | None = None
    ) -> dict[str, tuple[TokenStatus, str | None]]:
        """check_token for many users, K at a time (a fleet's refreshes are mostly waiting)."""
        workers = max(1, concurrency or self.settings.concurrency)
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check") as pool:
                return dict(zip(user_ids, pool.map(self.check_token, user_ids), strict=True))
        finally:
            self._close_finished_threads()

    # -- many attempts -----------------------------------------------------------------------

    def plan_due(self, *, limit: int | None = None) -> list[PlannedAttempt]:
        """What run-due would do now and why, changing nothing."""
        conn = self.db().conn
        now = self.clock()
        plans = []
        for pair in state_store.due_pairs(conn, now, limit):
            status = state_store.load_token_status(conn, pair.user_id, pair.integration)
            breaker = state_store.load_breaker(conn, pair.user_id, pair.integration)
            admission = breaker_policy.allow_attempt(breaker, now, self.settings)
            if not token_health.may_call_google(status):
                action, reason = "skip", "invalid_token: the grant is revoked; user must reconnect"
            elif not admission.allowed:
                retry = to_iso(breaker.next_retry_at) if breaker.next_retry_at else "?"
                action, reason = "skip", f"circuit_open: breaker open until {retry}"
            else:
                incremental = has_sync_tokens(conn, pair.user_id, pair.integration)
                kind = "incremental" if incremental else "full"
                trial = " (half-open trial)" if admission.trial else ""
                action, reason = "sync", f"{kind} sync, {pair.trigger} due{trial}"
            plans.append(
                PlannedAttempt(
                    pair.user_id, pair.integration, pair.trigger, pair.next_sync_at, action, reason
                )
            )
        return plans

    def run_due(
        self,
        *,
        limit: int | None = None,
        concurrency: int | None = None,
        on_attempt: Callable[[AttemptRecord], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> RunSummary | None:
        """Run every due pair, K at a time; None if another run-due holds the database."""
        with run_due_lock(self.settings.db_path) as acquired:
            if not acquired:
                return None
            pairs = state_store.due_pairs(self.db().conn, self.clock(), limit)
            if on_start:
                on_start(len(pairs))
            summary = RunSummary()
            workers = max(1, concurrency or self.settings.concurrency)
            # A user's due pairs run one after another on one worker: the second reuses the
            # access token the first refreshed, and a revoked grant costs one request, not one
            # per integration racing to discover it.
            by_user: dict[str, list[state_store.DuePair]] = {}
            for pair in pairs:
                by_user.setdefault(pair.user_id, []).append(pair)
            try:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
                    for records in pool.map(self._attempt_pairs, by_user.values()):
                        for record in records:
                            summary.attempts.append(record)
                            if on_attempt:
                                on_attempt(record)
            finally:
                self._close_finished_threads()
            return summary

    def _attempt_pairs(self, pairs: Sequence[state_store.DuePair]) -> list[AttemptRecord]:
        records = []
        for pair in pairs:
            try:
                records.append(self.attempt(pair.user_id, pair.integration, pair.trigger))
            except UserRemoved:  # `user remove` ran after this run-due listed the pair
                log.info("%s was removed during the run; not synced", pair.user_id)
        return records


def _save_refreshed_token(tx, user_id: str, session: GoogleSession) -> None:
    if session.credentials_refreshed:
        user_store.save_access_token(
            tx,
            user_id,
            session.access_token,
            session.token_expiry,
            rotated_refresh_token=session.new_refresh_token,
        )


@contextmanager
def orchestrator(settings: Settings, **kwargs) -> Iterator[Orchestrator]:
    """An Orchestrator whose connections are closed on exit."""
    runner = Orchestrator(settings, **kwargs)
    try:
        yield runner
    finally:
        runner.close()
