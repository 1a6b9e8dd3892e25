"""One policy over one scenario, measured: API calls counted at the fake, attempts, what the
report claimed, and how long each change at Google took to reach SQLite."""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from syncctl import fleet
from syncctl.config import Settings
from syncctl.engines.calendar import sync_calendar
from syncctl.engines.contacts import sync_contacts
from syncctl.fakegoogle.tokens import ACCESS_TOKEN_SECONDS
from syncctl.fleet import RunSummary
from syncctl.google.errors import GoogleError
from syncctl.google.session import GoogleSession
from syncctl.google.transport import KeepAlivePool
from syncctl.model import ALL_INTEGRATIONS, ErrorClass, Integration, Result, UserCredentials
from syncctl.orchestrator import Orchestrator
from syncctl.receiver import make_receiver, notified_sync
from syncctl.report import build_report, nearest_rank
from syncctl.simulation.clock import VirtualClock
from syncctl.simulation.oracle import Oracle, oracle_bound
from syncctl.simulation.scenario import Scenario
from syncctl.simulation.stage import Change, Stage, staged
from syncctl.store import users as user_store
from syncctl.store.metrics import count_attempts
from syncctl.store.report_queries import open_reconnect_notices

StepHook = Callable[[Stage], None]
StepReport = Callable[[datetime, RunSummary, list[str]], None]
NOTIFY_TIMEOUT_SECONDS = 10.0
DEFAULT_COALESCE_SECONDS = 2.0  # the receiver's coalescing window where settings have none
NAIVE_ENGINES = {Integration.CONTACTS: sync_contacts, Integration.CALENDAR: sync_calendar}
Pair = tuple[str, Integration]


@dataclass(frozen=True)
class Staleness:
    """How long changes at Google took to be mirrored (nearest-rank percentiles, in seconds)."""

    changes: int
    mirrored: int
    p50_seconds: int | None
    p95_seconds: int | None
    max_seconds: int | None

    @property
    def not_mirrored(self) -> int:
        """Changes no successful sync picked up before the run ended."""
        return self.changes - self.mirrored

    def as_dict(self) -> dict:
        """Plain data for JSON."""
        return {
            "changes": self.changes,
            "mirrored": self.mirrored,
            "not_mirrored": self.not_mirrored,
            "p50_seconds": self.p50_seconds,
            "p95_seconds": self.p95_seconds,
            "max_seconds": self.max_seconds,
        }


@dataclass(frozen=True)
class PolicyRun:
    """What one policy did over the scenario."""

    policy: str
    api_calls: int
    calls_by_endpoint: dict[str, int]
    calls_by_profile: dict[str, int]
    attempts: dict[str, int]
    claimed: dict | None  # the report's api_calls total (made, saved, saved_by); None if naive
    claimed_by_profile: dict[str, int] | None  # sum of api_calls_saved of each profile's users
    staleness: dict[str, Staleness]  # by integration (cli name) and "all"
    script_fingerprint: str
    wall_seconds: float
    window_calls: int | None = None  # calls inside the scenario's outage or rotation window
    reconnect_notices: int = 0  # users asked to reconnect (open notices) at the end
    client_refusals: int = 0  # attempts that ended with error class `client`
    oracle: Oracle | None = None  # the lower bound for this run's changes
    notifications: dict[str, int] = field(default_factory=dict)  # sent, dropped, dispatched


@dataclass
class _Tally:
    attempts: Counter[str] = field(default_factory=Counter)
    successes: dict[Pair, list[datetime]] = field(default_factory=dict)
    saved: Counter[str] = field(default_factory=Counter)  # api_calls_saved by user

    def add(self, pair: Pair, result: Result, at: datetime, saved: int = 0) -> None:
        self.attempts[result.value] += 1
        self.saved[pair[0]] += saved
        if result is Result.SUCCESS:
            self.successes.setdefault(pair, []).append(at)

    def merge(self, other: _Tally) -> None:
        """Add another tally of disjoint users (a shard of the same run)."""
        self.attempts.update(other.attempts)
        self.saved.update(other.saved)
        for pair, times in other.successes.items():
            self.successes.setdefault(pair, []).extend(times)


@dataclass
class Measures:
    """What a run (or one shard of the naive run) measured, before it is summed up. Shards of
    one run hold disjoint users and the same changes, so their measures add up (`merge`)."""

    counts: Counter[tuple[str | None, str]]  # the fake's requests by (user or None, endpoint)
    requests: int
    tally: _Tally
    changes: list[Change]
    script_fingerprint: str
    window_calls: int | None
    reconnect_users: set[str]
    client_refusals: int
    notifications: dict[str, int]
    seconds: float  # wall time, added up over shards

    def merge(self, other: Measures) -> None:
        """Add a shard that replayed the same script for other users."""
        if other.script_fingerprint != self.script_fingerprint:
            raise RuntimeError("the shards did not replay the same changes")
        self.counts.update(other.counts)
        self.requests += other.requests
        self.tally.merge(other.tally)
        if other.window_calls is not None:
            self.window_calls = (self.window_calls or 0) + other.window_calls
        self.reconnect_users |= other.reconnect_users
        self.client_refusals += other.client_refusals
        for key, value in other.notifications.items():
            self.notifications[key] = self.notifications.get(key, 0) + value
        self.seconds += other.seconds


@dataclass
class _Pending:
    calendars: set[str]
    due: datetime


class VirtualDispatcher:
    """The receiver's dispatch on the virtual clock: a user's notifications coalesce for
    `window` seconds after the first, then ONE calendar sync runs (trigger `webhook`) at the
    moment the window closes, as `webhook serve` does in real time."""

    def __init__(self, run: Callable[[str, frozenset[str]], None], window: float) -> None:
        self._run = run
        self._window = timedelta(seconds=window)
        self._pending: dict[str, _Pending] = {}
        self.dispatched = 0

    def notify(self, user_id: str, calendar_id: str, at: datetime) -> None:
        """A valid notification for the user's calendar arrived at `at`."""
        pending = self._pending.get(user_id)
        if pending is None:
            self._pending[user_id] = _Pending({calendar_id}, at + self._window)
        else:
            pending.calendars.add(calendar_id)

    def next_due(self) -> datetime | None:
        """When the next coalesced sync falls due (None when nothing is pending)."""
        return min((p.due for p in self._pending.values()), default=None)

    def run_until(self, moment: datetime, *, inclusive: bool, clock: VirtualClock) -> None:
        """Run every sync due before `moment` (or at it, with `inclusive`), in due order."""
        while (due := self.next_due()) is not None and (
            due < moment or (inclusive and due == moment)
        ):
            user_id = min(self._pending, key=lambda u: (self._pending[u].due, u))
            pending = self._pending.pop(user_id)
            clock.advance_to(max(pending.due, clock.now()))
            self.dispatched += 1
            self._run(user_id, frozenset(pending.calendars))


def run_orchestrated(
    scenario: Scenario,
    base: Settings,
    db_path: Path,
    *,
    name: str = "orchestrated",
    before_step: StepHook | None = None,
    on_step: StepReport | None = None,
    concurrency: int = 1,
    webhooks: bool = False,
) -> PolicyRun:
    """Replay the scenario with `run_due` at every step, as cron would run `syncctl run-due`;
    with `webhooks`, a receiver runs beside it and calendar watch channels are kept open."""
    started = time.perf_counter()
    tally = _Tally()
    with staged(scenario, base, db_path) as stage, _receiver(stage, enabled=webhooks):
        settings = stage.settings.with_overrides(concurrency=concurrency)
        runner = Orchestrator(settings, clock=stage.clock.now, sleep=stage.clock.sleep)
        dispatcher = None
        if webhooks:
            dispatcher = _dispatcher(stage, runner, tally)
        try:
            for moment in scenario.steps():
                notes = stage.play_until(moment)
                if dispatcher is not None:
                    dispatcher.run_until(moment, inclusive=True, clock=stage.clock)
                if before_step is not None:
                    before_step(stage)
                summary = fleet.run_due(runner)
                if summary is None:
                    raise RuntimeError(f"another run-due holds {db_path}")
                if stage.after_change is not None:
                    stage.after_change()  # the `sync` message of each channel just opened
                for record in summary.attempts:
                    pair = (record.user_id, record.integration_type)
                    tally.add(pair, record.result, moment, record.api_calls_saved)
                if on_step is not None:
                    on_step(moment, summary, notes)
        finally:
            runner.close()
        report = build_report(stage.db, now=scenario.end, since=scenario.end - scenario.start)
        claimed = {
            **report["api_calls"]["total"],
            "counterfactual": report["api_calls"]["counterfactual"],
        }
        measures = _measures(stage, tally, started, dispatcher.dispatched if dispatcher else 0)
        return summarize(name, scenario, measures, claimed)


def _dispatcher(stage: Stage, runner: Orchestrator, tally: _Tally) -> VirtualDispatcher:
    """The receiver's dispatch for this run: each valid change notification the fake delivered
    is queued at the virtual moment it arrived, and its sync runs when the window closes."""
    window = getattr(stage.settings, "webhook_coalesce_seconds", DEFAULT_COALESCE_SECONDS)

    def run(user_id: str, calendars: frozenset[str]) -> None:
        for record in notified_sync(runner, user_id, calendars):
            pair = (record.user_id, record.integration_type)
            tally.add(pair, record.result, stage.clock.now(), record.api_calls_saved)

    dispatcher = VirtualDispatcher(run, window)
    seen = 0
    deliver = stage.after_change

    def delivered() -> None:
        nonlocal seen
        if deliver is not None:
            deliver()
        sent = stage.fake.notifications_sent
        for note in sent[seen:]:
            if note.status == 200 and note.resource_state != "sync":
                dispatcher.notify(note.user_id, note.calendar_id, stage.clock.now())
        seen = len(sent)

    stage.after_change = delivered
    stage.before_moving = lambda at: dispatcher.run_until(at, inclusive=False, clock=stage.clock)
    return dispatcher


@contextmanager
def _receiver(stage: Stage, *, enabled: bool) -> Iterator[None]:
    """With `enabled`, serve the webhook receiver on loopback on the stage's clock, point
    SYNCCTL_WEBHOOK_URL at it, and deliver each change's pushes before the clock moves on."""
    if not enabled:
        yield
        return
    # The receiver records each notification (the pair due, trigger webhook); the simulator's
    # VirtualDispatcher runs the coalesced syncs in virtual time, so its own dispatch is off.
    server = make_receiver(
        stage.settings, "127.0.0.1", 0, clock=stage.clock.now, log_line=_quiet, dispatch=False
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stage.settings = replace(stage.settings, webhook_url=f"{server.url}/")

    def deliver() -> None:
        if not stage.fake.flush_notifications(timeout=NOTIFY_TIMEOUT_SECONDS):
            raise RuntimeError("the fake Google could not deliver its webhook notifications")

    stage.after_change = deliver
    try:
        yield
    finally:
        stage.after_change = None
        server.shutdown()
        thread.join(timeout=5)


def _quiet(line: str) -> None:
    del line  # the receiver's one line per notification would flood a simulated week


def run_naive(scenario: Scenario, base: Settings, db_path: Path) -> PolicyRun:
    """Replay the scenario with the naive poller: every pair synced at its default interval on a
    fixed grid, through the engines with a GoogleSession, with no gate, breaker or back-off."""
    return summarize("naive", scenario, naive_shard(scenario, base, db_path), None)


def naive_shard(
    scenario: Scenario, base: Settings, db_path: Path, users: Collection[str] | None = None
) -> Measures:
    """The naive poller over `users` (default: the whole fleet); the fake still holds the whole
    fleet and plays the whole script, so every user's data and changes are those of the full run.

    Naive polls share nothing between users (no gate, breaker, quota budget or webhooks; the
    fake answers each user from that user's own state, and the clock stands still within a
    step), so shards over disjoint users measure, added up, exactly what one run over the fleet
    does."""
    started = time.perf_counter()
    tally = _Tally()
    polled = None if users is None else frozenset(users)
    with staged(scenario, base, db_path, users=polled) as stage:
        interval = {i: stage.settings.interval_for(i) for i in ALL_INTEGRATIONS}
        due: dict[Pair, float] = {
            (user.user_id, i): scenario.start.timestamp()
            for user in scenario.users
            if polled is None or user.user_id in polled
            for i in ALL_INTEGRATIONS
        }
        grants = NaiveGrants(stage)
        next_due = min(due.values(), default=math.inf)
        connections = KeepAlivePool()  # one keep-alive connection for every poll, as run-due
        try:
            for moment in scenario.steps():
                stage.play_until(moment)
                now = moment.timestamp()
                if next_due > now:
                    continue  # no pair is due at this step
                for pair in sorted(p for p, at in due.items() if at <= now):
                    result = naive_poll(stage, *pair, pool=connections, grants=grants)
                    tally.add(pair, result, moment)
                    while due[pair] <= now:
                        due[pair] += interval[pair[1]]
                next_due = min(due.values())
        finally:
            connections.close()
        return _measures(stage, tally, started)


class NaiveGrants:
    """The naive poller's grants, held in memory as a poller's own process would: each user's
    read from the database once, a refreshed access token kept, all read again after the fleet
    is re-imported (which replaces every stored grant)."""

    def __init__(self, stage: Stage) -> None:
        self._stage = stage
        self._imports = stage.imports
        self._grants: dict[str, UserCredentials] = {}

    def get(self, user_id: str) -> UserCredentials:
        """The user's grant as the database holds it, with the latest refreshed token."""
        if self._imports != self._stage.imports:
            self._grants.clear()
            self._imports = self._stage.imports
        grant = self._grants.get(user_id)
        if grant is None:
            grant = user_store.load_credentials(self._stage.db.conn, user_id)
            if grant is None:
                raise LookupError(f"user {user_id!r} has no credentials")
            self._grants[user_id] = grant
        return grant

    def refreshed(self, user_id: str, access_token: str | None, expiry: str | None) -> None:
        """Keep a token the session refreshed, for the user's next poll."""
        grant = self.get(user_id)
        self._grants[user_id] = UserCredentials(
            client_id=grant.client_id,
            client_secret=grant.client_secret,
            refresh_token=grant.refresh_token,
            access_token=access_token,
            token_expiry=expiry,
            scopes=grant.scopes,
        )


def naive_poll(
    stage: Stage,
    user_id: str,
    integration: Integration,
    *,
    pool: KeepAlivePool | None = None,
    grants: NaiveGrants,
) -> Result:
    """One naive poll: an incremental (or first full) sync, the token refreshed when needed."""
    session = GoogleSession(
        grants.get(user_id),
        stage.settings,
        now=stage.clock.now,
        sleep=stage.clock.sleep,
        pool=pool,
    )
    try:
        NAIVE_ENGINES[integration](stage.db, session, user_id, full=False, now=stage.clock.now)
        return Result.SUCCESS
    except GoogleError:
        return Result.FAILURE
    finally:
        if session.credentials_refreshed:
            grants.refreshed(user_id, session.access_token, session.token_expiry)
        session.close()


def _measures(stage: Stage, tally: _Tally, started: float, dispatched: int = 0) -> Measures:
    return Measures(
        counts=Counter(stage.fake.counts()),
        requests=stage.fake.request_count(),
        tally=tally,
        changes=stage.changes,
        script_fingerprint=stage.script_fingerprint,
        window_calls=stage.window_calls,
        reconnect_users={u for u, _ in open_reconnect_notices(stage.db.conn, None)},
        client_refusals=count_attempts(stage.db.conn, error_class=ErrorClass.CLIENT),
        notifications={
            "sent": sum(1 for n in stage.fake.notifications_sent if n.resource_state != "sync"),
            "dropped": stage.fake.dropped_notifications,
            "dispatched": dispatched,
        },
        seconds=time.perf_counter() - started,
    )


def summarize(name: str, scenario: Scenario, measures: Measures, claimed: dict | None) -> PolicyRun:
    """The figures of one policy's run from what it (or each of its shards) measured."""
    profiles = scenario.profiles()
    by_endpoint: Counter[str] = Counter()
    by_profile: Counter[str] = Counter()
    for (user_id, endpoint), count in measures.counts.items():
        by_endpoint[endpoint] += count
        by_profile[profiles[user_id].value if user_id in profiles else "unattributed"] += count
    claimed_by_profile: Counter[str] = Counter()
    tally = measures.tally
    for user_id, saved in tally.saved.items():
        claimed_by_profile[profiles[user_id].value] += saved
    return PolicyRun(
        policy=name,
        api_calls=measures.requests,
        calls_by_endpoint=dict(sorted(by_endpoint.items())),
        calls_by_profile=dict(sorted(by_profile.items())),
        attempts={r.value: tally.attempts[r.value] for r in Result},
        claimed=claimed,
        claimed_by_profile=None if claimed is None else dict(sorted(claimed_by_profile.items())),
        staleness=measure_staleness(measures.changes, tally.successes),
        script_fingerprint=measures.script_fingerprint,
        wall_seconds=round(measures.seconds, 2),
        window_calls=measures.window_calls,
        reconnect_notices=len(measures.reconnect_users),
        client_refusals=measures.client_refusals,
        oracle=oracle_bound(
            measures.changes, token_seconds=ACCESS_TOKEN_SECONDS, cut_off=scenario.cut_offs()
        ),
        notifications=dict(measures.notifications),
    )


def measure_staleness(
    changes: Iterable[Change], successes: dict[Pair, list[datetime]]
) -> dict[str, Staleness]:
    """Per change, the time to the first successful sync of its pair at or after it."""
    ages: dict[str, list[int]] = {i.cli_name: [] for i in ALL_INTEGRATIONS}
    totals: Counter[str] = Counter()
    for change in changes:
        name = change.integration.cli_name
        totals[name] += 1
        times = successes.get((change.user_id, change.integration), [])
        index = bisect.bisect_left(times, change.at)
        if index < len(times):
            ages[name].append(int((times[index] - change.at).total_seconds()))
    ages["all"] = [age for name in list(ages) for age in ages[name]]
    totals["all"] = sum(totals.values())
    return {name: _staleness(totals[name], sorted(values)) for name, values in ages.items()}


def _staleness(changes: int, ages: list[int]) -> Staleness:
    return Staleness(
        changes=changes,
        mirrored=len(ages),
        p50_seconds=nearest_rank(ages, 50),
        p95_seconds=nearest_rank(ages, 95),
        max_seconds=ages[-1] if ages else None,
    )
