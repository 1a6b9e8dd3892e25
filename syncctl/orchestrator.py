"""The one pipeline every sync goes through, scheduled or manual.

    due? -> token health -> circuit breaker -> sync -> record metrics -> update schedule

An attempt reads the clock once, loads its pair's state once (`store.state.load_pair_state`),
asks the gate (`policy.gate`: a revoked grant makes no Google call at all, an open breaker none
either, not even a token refresh), refreshes the token if it is missing or about to expire, runs
the engine, and hands the ending to `policy.attempt.conclude`, whose `PairUpdate` (metrics row,
breaker, schedule, token health, notice) is written in one transaction (`save_attempt`), so the
record of an attempt is never half written. Fleet loops (run-due, its dry run, token checks)
live in `syncctl.fleet`; per-thread connections in `syncctl.connections`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

import sqlite_utils

from syncctl.clock import Clock, from_iso, utcnow
from syncctl.config import Settings
from syncctl.connections import ConnectionPool
from syncctl.engines import SyncOutcome
from syncctl.engines import channels as channel_upkeep
from syncctl.engines.calendar import sync_calendar
from syncctl.engines.contacts import sync_contacts
from syncctl.engines.guard import MassDeleteHeld
from syncctl.google.errors import AuthError, GoogleError, UnexpectedResponse
from syncctl.google.session import CALENDAR_API, OAUTH_API, PEOPLE_API, GoogleSession
from syncctl.leases import HeldLease, pair_lease
from syncctl.model import (
    AttemptRecord,
    BreakerRecord,
    ErrorClass,
    Integration,
    PairState,
    RefreshedToken,
    Result,
    SkipReason,
    TokenStatus,
    Trigger,
    UserCredentials,
)
from syncctl.policy import token_health
from syncctl.policy.attempt import Verdict, conclude, keep_notification
from syncctl.policy.calendar_list import lists_calendar_list
from syncctl.policy.channels import upkeep_needed
from syncctl.policy.fleet_breaker import DATA_API, Api, Evidence, evidence_of
from syncctl.policy.gate import Gate, gate
from syncctl.policy.mass_delete import Deletions, hold_deletions
from syncctl.policy.token_health import TokenAction, TokenCheck
from syncctl.quota import QuotaBudget
from syncctl.store import DatabaseError, transaction
from syncctl.store import state as state_store
from syncctl.store import users as user_store
from syncctl.store.metrics import last_success_at
from syncctl.store.sync_tokens import (
    CALENDAR_LIST_SCOPE,
    PendingToken,
    save_pending_tokens,
    sync_token_updated_at,
)

log = logging.getLogger("syncctl.orchestrator")

Engine = Callable[..., SyncOutcome]
ENGINES: dict[Integration, Engine] = {
    Integration.CONTACTS: sync_contacts,
    Integration.CALENDAR: sync_calendar,
}


# The fleet breaker's API of each API name a GoogleError carries.
FLEET_APIS = {OAUTH_API: Api.OAUTH, PEOPLE_API: Api.PEOPLE, CALENDAR_API: Api.CALENDAR}


class UserRemoved(LookupError):
    """The user of a due pair was removed before its attempt started."""


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
        self.pool = ConnectionPool(settings.db_path)
        self.quota = QuotaBudget(settings, self.db, clock=clock, sleep=sleep)

    def db(self) -> sqlite_utils.Database:
        """This thread's connection to the database."""
        return self.pool.db()

    def close(self) -> None:
        """Give back unspent quota grants, then close every connection this orchestrator opened."""
        try:
            self.quota.release()
        finally:
            self.pool.close()

    def session(
        self, credentials: UserCredentials, settings: Settings, now: datetime
    ) -> GoogleSession:
        """A GoogleSession on this thread's keep-alive connections, spending from the budget."""
        return GoogleSession(
            credentials,
            settings,
            now=lambda: now,
            sleep=self.sleep,
            pool=self.pool.http(),
            spend=self.quota.spend,
        )

    # -- one attempt -------------------------------------------------------------------------

    def attempt(
        self,
        user_id: str,
        integration: Integration,
        trigger: Trigger,
        *,
        full: bool = False,
        allow_mass_delete: bool = False,
        only: Collection[str] | None = None,
    ) -> AttemptRecord:
        """Run one (user, integration) through every gate and, if allowed, the sync.

        An attempt the gate lets through first takes the pair's lease (`leases.PairBusy`, and
        no row, when another process syncs the pair) and reads the pair's state again under
        it, so it decides on state no other process changes meanwhile. `only` limits a
        calendar sync to the notified calendars (no calendar-list call). `allow_mass_delete`
        applies deletions the mass-delete guard would hold (an operator's `sync
        --allow-mass-delete`); `full` re-fetches everything (and lets a held pair sync).
        """
        return self.attempt_with_evidence(
            user_id, integration, trigger, full=full, allow_mass_delete=allow_mass_delete, only=only
        )[0]

    def attempt_with_evidence(
        self,
        user_id: str,
        integration: Integration,
        trigger: Trigger,
        *,
        full: bool = False,
        probe: bool = False,
        allow_mass_delete: bool = False,
        only: Collection[str] | None = None,
        first_look: tuple[TokenStatus, BreakerRecord, bool] | None = None,
    ) -> tuple[AttemptRecord, list[Evidence]]:
        """An attempt, and what it found at each Google API it sent requests to (the fleet
        breaker's evidence). A `probe` (the fleet breaker's) is sent without retries.
        `first_look`: the gate's inputs as run-due listed them (token status, breaker, held),
        in place of reading them first."""
        db = self.db()
        now = self.clock()
        started = time.monotonic()
        # A first look at what the gate decides on (one statement, or the listing's); the whole
        # state is read for a skip's record, or under the lease for the attempt, and decided on
        # again, so a first look that is out of date changes nothing but which read comes first.
        first = first_look or state_store.load_gate_state(db.conn, user_id, integration)
        if not self._gate(*first, now, full=full, allow_mass_delete=allow_mass_delete).allowed:
            state = state_store.load_pair_state(db.conn, user_id, integration)
            decision = self._gate_of(state, now, full=full, allow_mass_delete=allow_mass_delete)
            if not decision.allowed:
                verdict = Verdict(trigger, Result.SKIPPED, decision.skip_reason)
                return self._save(db, state, verdict, now, started), []
        with pair_lease(db, user_id, integration, now=now, settings=self.settings) as lease:
            state = state_store.load_pair_state(db.conn, user_id, integration)
            return self._leased_attempt(
                db,
                state,
                trigger,
                now,
                started,
                lease,
                full=full,
                only=only,
                probe=probe,
                allow_mass_delete=allow_mass_delete,
            )

    def _gate_of(
        self, state: PairState, now: datetime, *, full: bool, allow_mass_delete: bool
    ) -> Gate:
        return self._gate(
            state.token_status,
            state.breaker,
            state.mass_delete_held,
            now,
            full=full,
            allow_mass_delete=allow_mass_delete,
        )

    def _gate(
        self,
        token_status: TokenStatus,
        breaker: BreakerRecord,
        held: bool,
        now: datetime,
        *,
        full: bool,
        allow_mass_delete: bool,
    ) -> Gate:
        return gate(
            token_status,
            breaker,
            now,
            self.settings,
            held=held,
            allow_mass_delete=allow_mass_delete,
            full=full,
        )

    def _leased_attempt(
        self,
        db: sqlite_utils.Database,
        state: PairState,
        trigger: Trigger,
        now: datetime,
        started: float,
        lease: HeldLease,
        *,
        full: bool,
        only: Collection[str] | None,
        probe: bool,
        allow_mass_delete: bool,
    ) -> tuple[AttemptRecord, list[Evidence]]:
        user_id = state.user_id
        decision = self._gate_of(state, now, full=full, allow_mass_delete=allow_mass_delete)
        if decision.trial:
            decision = self._take_trial_lease(db, state, now)
        if not decision.allowed:
            verdict = Verdict(trigger, Result.SKIPPED, decision.skip_reason)
            return self._save(db, state, verdict, now, started, lease=lease), []
        credentials = user_store.load_credentials(db.conn, user_id)
        if credentials is None:
            raise UserRemoved(f"user {user_id!r} has no credentials")
        # A half-open trial (or the fleet breaker's probe) is one probe of a service that kept
        # failing: no retries, so an open breaker costs one request rather than a retry burst.
        single = decision.trial or probe
        settings = replace(self.settings, retry_max_attempts=1) if single else self.settings
        session = self.session(credentials, settings, now)
        pending: list[PendingToken] = []  # tokens that cover no data, stored with the record
        try:
            verdict = self._run_session(
                db,
                session,
                state,
                decision,
                trigger,
                now,
                full=full,
                allow_mass_delete=allow_mass_delete,
                only=only,
                pending=pending,
            )
            record = self._save(
                db, state, verdict, now, started, session, lease=lease, probe=probe, tokens=pending
            )
            return record, _evidence(state.integration, session, verdict)
        finally:
            session.close()  # the thread's keep-alive connections stay in the pool

    def _take_trial_lease(self, db: sqlite_utils.Database, state: PairState, now: datetime) -> Gate:
        # The half-open lease is decided again under the write lock and stored before the
        # trial runs, so two processes (run-due and a manual sync) never both run a trial.
        with transaction(db) as tx:
            breaker = state_store.load_breaker(tx, state.user_id, state.integration)
            decision = gate(state.token_status, breaker, now, self.settings)
            if decision.trial:
                state_store.save_breaker(tx, state.user_id, state.integration, decision.breaker)
        return decision

    def _run_session(
        self,
        db: sqlite_utils.Database,
        session: GoogleSession,
        state: PairState,
        decision: Gate,
        trigger: Trigger,
        now: datetime,
        *,
        full: bool,
        allow_mass_delete: bool,
        only: Collection[str] | None = None,
        pending: list[PendingToken] | None = None,
    ) -> Verdict:
        credentials = session.credentials
        admitted = decision.breaker
        listing = only is None and (
            state.integration is not Integration.CALENDAR
            or lists_calendar_list(
                state.calendar_list_listed_at,
                now,
                self.settings,
                trigger=trigger,
                full=full,
            )
        )

        def guard(deletions: Deletions) -> bool:
            return hold_deletions(deletions, self.settings, allowed=allow_mass_delete)

        try:
            expiry = from_iso(credentials.token_expiry) if credentials.token_expiry else None
            action = token_health.token_action(
                state.token_status, credentials.access_token, expiry, now, self.settings
            )
            if action is TokenAction.REFRESH:
                session.refresh_token()
            engine = self.engines[state.integration]
            scope: dict = {"pending": pending}
            if only is not None:
                scope["only"] = only
            if not listing:
                scope["list_calendars"] = False
            outcome = engine(
                db, session, state.user_id, full=full, now=lambda: now, guard=guard, **scope
            )
            channels = None
            before_upkeep = session.calls_made
            if state.integration is Integration.CALENDAR and upkeep_needed(
                self.settings.webhook_url, state.open_channels
            ):  # on the same session: its calls count
                channels = channel_upkeep.maintain_channels(
                    db, session, state.user_id, settings=self.settings, now=now
                )
            # what a naive poll would not send the same way: channel upkeep (none) and the token
            # refresh (policy/savings.py prices the naive poll's own)
            overhead_calls = session.calls_made - before_upkeep + session.token_refreshes
        except MassDeleteHeld as held:  # nothing deleted, no token moved: an operator decides
            return Verdict(
                trigger,
                Result.SKIPPED,
                SkipReason.MASS_DELETE_HELD,
                error_message=str(held),
                admitted=admitted,
                held=held.deletions,
            )
        except GoogleError as error:
            return _failed(trigger, error, admitted)
        except DatabaseError:  # the database itself is gone or refused: stop, do not count it
            raise
        except Exception as exc:  # a bug or a local fault must not stop the rest of the run
            log.exception(
                "sync of %s for %s failed unexpectedly", state.integration.cli_name, state.user_id
            )
            return _failed(
                trigger, UnexpectedResponse(f"unexpected {type(exc).__name__}"), admitted
            )
        live = bool(channels and channels.covered)
        listed = None
        if only is not None:  # a notified sync: the safety poll stays where the last one put it
            listed = _last_safety_poll(db.conn, state.user_id, state.integration)
        return Verdict(
            trigger,
            Result.SUCCESS,
            outcome=outcome,
            channel_live=live,
            admitted=admitted,
            renew_by=channels.renew_by if channels and live else None,
            notified_only=only is not None,
            list_refreshed_at=listed,
            calendar_list_skipped=state.integration is Integration.CALENDAR and not listing,
            overhead_calls=overhead_calls,
        )

    def _save(
        self,
        db: sqlite_utils.Database,
        state: PairState,
        verdict: Verdict,
        now: datetime,
        started: float,
        session: GoogleSession | None = None,
        *,
        lease: HeldLease | None = None,
        probe: bool = False,
        tokens: Sequence[PendingToken] = (),
    ) -> AttemptRecord:
        """Write the attempt's record and decisions in one transaction, releasing its lease and
        storing the sync's `tokens` that cover no data in the same one (write transactions
        fewer per attempt). `probe`: the session was the fleet breaker's probe."""
        refreshed = (
            _refreshed(session) if session is not None and session.credentials_refreshed else None
        )
        verdict = replace(  # what only the end of the session knows, in one copy of the verdict
            verdict,
            calls_made=session.calls_made if session else 0,
            duration_ms=int((time.monotonic() - started) * 1000),
            fleet_probe=probe,
            refreshed=refreshed,
        )
        update = conclude(state, verdict, now, self.settings)
        with transaction(db) as tx:
            now_stored = state_store.load_save_point(tx, state.user_id, state.integration)
            update = keep_notification(update, state.mark, now_stored.mark)
            if now_stored.pair_exists:  # a removed user's pair keeps no token
                save_pending_tokens(tx, state.user_id, tokens)
            state_store.save_attempt(
                tx, update, pair_exists=now_stored.pair_exists, stored_breaker=now_stored.breaker
            )
            if lease is not None:
                lease.release_in(tx, now_stored.lease)
        if lease is not None:
            lease.released = True  # committed
        return update.attempt

    # -- token health checks -----------------------------------------------------------------

    def check_token(self, user_id: str) -> tuple[TokenStatus, str | None]:
        """Verify a user's grant now with a refresh and store the verdict.

        A revoked grant is not retried (no Google call until the user is reconnected); a
        transient failure leaves the stored status as it was and returns it with the error.
        """
        db = self.db()
        now = self.clock()
        integrations = user_store.user_integrations(db.conn, user_id)
        statuses = {state_store.load_token_status(db.conn, user_id, i) for i in integrations}
        if any(not token_health.may_call_google(status) for status in statuses):
            return TokenStatus.REVOKED, "revoked; reconnect with `syncctl user add`"
        credentials = user_store.load_credentials(db.conn, user_id)
        if credentials is None or not integrations:
            return TokenStatus.UNKNOWN, "no credentials or no integrations"
        with self.session(credentials, self.settings, now) as session:
            try:
                session.refresh_token()
            except AuthError as error:
                check = TokenCheck.INVALID_GRANT if error.revoked else TokenCheck.AUTH_REJECTED
                message = str(error)
            except GoogleError as error:
                current = statuses.pop() if len(statuses) == 1 else TokenStatus.UNKNOWN
                return current, f"could not check: {error}"
            else:
                check, message = TokenCheck.REFRESHED, None
        previous = statuses.pop() if len(statuses) == 1 else TokenStatus.UNKNOWN
        with transaction(db) as tx:
            notice_open = state_store.has_open_notice(tx, user_id, token_health.RECONNECT_NOTICE)
            health, notice = token_health.after_check(
                user_id, integrations, check, message, previous, notice_open=notice_open
            )
            if session.credentials_refreshed:
                state_store.save_refreshed_token(tx, user_id, _refreshed(session))
            state_store.save_token_verdict(tx, user_id, health, notice, now=now)
        return health.status, message


def _last_safety_poll(
    conn: sqlite3.Connection, user_id: str, integration: Integration
) -> datetime | None:
    """The later of the calendar list's last listing and the pair's last scheduled success (a
    scheduled sync within the list's cadence lists only the events)."""
    listed = sync_token_updated_at(conn, user_id, integration, CALENDAR_LIST_SCOPE)
    polled = last_success_at(conn, user_id, integration, Trigger.SCHEDULED)
    return max((moment for moment in (listed, polled) if moment is not None), default=None)


def _evidence(integration: Integration, session: GoogleSession, verdict: Verdict) -> list[Evidence]:
    """What this attempt found at each Google API it sent requests to."""
    failed_api = None
    if verdict.error_class is not None:
        failed_api = FLEET_APIS.get(verdict.failed_api or "", DATA_API[integration])
    return evidence_of(
        integration,
        reached_google=session.calls_made > 0,
        failed_api=failed_api,
        transient=verdict.error_class is ErrorClass.TRANSIENT,
        refreshed=session.credentials_refreshed,
        reason=verdict.error_message,
    )


def _failed(trigger: Trigger, error: GoogleError, admitted: BreakerRecord) -> Verdict:
    """The verdict of an attempt a Google error ended (invalid_grant: a skip, not a failure)."""
    revoked = isinstance(error, AuthError) and error.revoked
    return Verdict(
        trigger,
        Result.SKIPPED if revoked else Result.FAILURE,
        SkipReason.INVALID_TOKEN if revoked else None,
        error_class=error.error_class,
        error_message=str(error),
        grant_revoked=revoked,
        retry_after=error.retry_after,
        admitted=admitted,
        failed_api=error.api,
    )


def _refreshed(session: GoogleSession) -> RefreshedToken:
    return RefreshedToken(session.access_token, session.token_expiry, session.new_refresh_token)


@contextmanager
def orchestrator(settings: Settings, **kwargs) -> Iterator[Orchestrator]:
    """An Orchestrator whose connections are closed on exit."""
    runner = Orchestrator(settings, **kwargs)
    try:
        yield runner
    finally:
        runner.close()
