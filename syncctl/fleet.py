"""The fleet loops around the pipeline: run-due, its dry run, token checks, breaker resets.

Each loop lists candidates with the store, decides with the same policy functions an attempt
uses (`policy.gate`, `policy.schedule.is_due`) and runs attempts on K worker threads, K being
`settings.concurrency` (flags meet settings in the CLI, `Settings.with_overrides`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import sqlite_utils

from syncctl.clock import to_iso
from syncctl.leases import PairBusy
from syncctl.model import (
    AttemptRecord,
    DuePair,
    ErrorClass,
    Integration,
    Result,
    SkipReason,
    TokenStatus,
    Trigger,
)
from syncctl.orchestrator import Orchestrator, UserRemoved
from syncctl.policy import breaker as breaker_policy
from syncctl.policy.fleet_breaker import API_NAMES, FleetGate
from syncctl.policy.gate import gate
from syncctl.policy.schedule import is_due
from syncctl.run_gates import RunGates
from syncctl.runlock import run_due_lock
from syncctl.store import fleet_breaker as fleet_breaker_store
from syncctl.store import state as state_store
from syncctl.store import transaction
from syncctl.store.fleet_breaker import load_fleet_breakers
from syncctl.store.readback import due_time
from syncctl.store.sync_tokens import has_sync_tokens

log = logging.getLogger("syncctl.fleet")

# How many new container objects (net of those freed) start a collection of the youngest
# generation in a process that syncs a fleet; CPython's default is 700.
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_collector() -> None:
    """Collect cyclic garbage less often, for a process that runs syncs on many threads.

    Every sync allocates a few thousand short-lived objects, freed by reference counting;
    at CPython's threshold the collector ran every few syncs and each time walked the live
    objects of every thread's sync in flight: 2-3% of run-due's CPU at concurrency 96 (perf),
    and 4-7% less CPU per sync without it (benchmarks/bench_fleet.py, alternated rounds).
    Garbage in reference cycles (rare here) waits a little longer; the older generations keep
    their thresholds."""
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_GENERATION_THRESHOLD), older, oldest)


@dataclass(frozen=True)
class PlannedAttempt:
    """What `run-due --dry-run` says about one due pair."""

    user_id: str
    integration: Integration
    trigger: Trigger
    due_since: str
    action: str  # "sync", "skip" or "hold" (not started in this run: a fleet breaker is open)
    reason: str


@dataclass
class RunSummary:
    """What one `run-due` did."""

    attempts: list[AttemptRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what went wrong fleet-wide, once each
    held: dict[str, int] = field(default_factory=dict)  # due pairs not started, by why

    @property
    def failed(self) -> int:
        return sum(1 for a in self.attempts if a.result == Result.FAILURE)

    def count(self, result: Result) -> int:
        return sum(1 for a in self.attempts if a.result == result)


def due_now(runner: Orchestrator, limit: int | None = None) -> list[DuePair]:
    """The pairs due at this moment, most overdue first (the index narrows, the policy decides)."""
    now = runner.clock()
    candidates = state_store.due_pairs(runner.db().conn, now, limit)
    return [
        pair
        for pair in candidates
        if is_due(due_time(pair.next_sync_at), now, held=pair.mass_delete_held)
    ]


def plan_due(runner: Orchestrator, *, limit: int | None = None) -> list[PlannedAttempt]:
    """What run-due would do now and why, changing nothing."""
    conn = runner.db().conn
    now = runner.clock()
    plans = []
    # in memory only: nothing is stored
    gates = RunGates(load_fleet_breakers(conn), now=now, settings=runner.settings)
    for pair in state_store.due_pairs(conn, now, limit):
        if not is_due(due_time(pair.next_sync_at), now, held=pair.mass_delete_held):
            continue
        decision = gate(pair.token_status, pair.breaker, now, runner.settings)
        if decision.skip_reason is SkipReason.INVALID_TOKEN:
            action, reason = "skip", "invalid_token: the grant is revoked; user must reconnect"
        elif decision.skip_reason is SkipReason.CIRCUIT_OPEN:
            retry_at = pair.breaker.next_retry_at
            retry = to_iso(retry_at) if retry_at else "?"
            action, reason = "skip", f"circuit_open: breaker open until {retry}"
        elif (held := gates.admit(pair.integration, None)).gate is FleetGate.HOLD:
            action, reason = "hold", "fleet breaker open: not started in this run"
        else:
            incremental = has_sync_tokens(conn, pair.user_id, pair.integration)
            kind = "incremental" if incremental else "full"
            trial = " (half-open trial)" if decision.trial else ""
            if held.gate is FleetGate.PROBE:
                names = ", ".join(API_NAMES[api] for api in held.probes)
                trial = f" (the fleet breaker's probe of {names})"
            elif held.gate is FleetGate.SINGLE and not decision.trial:
                trial = " (without retries: the latest attempts failed at Google)"
            action, reason = "sync", f"{kind} sync, {pair.trigger} due{trial}"
        plans.append(
            PlannedAttempt(
                pair.user_id, pair.integration, pair.trigger, pair.next_sync_at, action, reason
            )
        )
    return plans


def run_due(
    runner: Orchestrator,
    *,
    limit: int | None = None,
    on_attempt: Callable[[AttemptRecord], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunSummary | None:
    """Run every due pair, `settings.concurrency` at a time; None if another run-due holds the
    database.

    The fleet breakers come first: each open one is probed by the first due pair that needs its
    API, before anything else; pairs behind an open fleet breaker or a refused OAuth client are
    not started in this run (no row, still due)."""
    runner.db()  # a missing or refused database is reported before any lock file is made
    with run_due_lock(runner.settings.db_path) as acquired:
        if not acquired:
            return None
        conn = runner.db().conn
        pairs = due_now(runner, limit)
        if on_start:
            on_start(len(pairs))
        summary = RunSummary()
        if not pairs:  # nothing to start: the fleet breakers are neither read nor written
            runner.quota.release()
            return summary
        gates = RunGates(load_fleet_breakers(conn), now=runner.clock(), settings=runner.settings)

        def attempt_pairs(user_pairs: Sequence[DuePair]) -> list[AttemptRecord]:
            records = []
            for pair in user_pairs:
                record = _gated_attempt(runner, gates, pair)
                if record is not None:
                    records.append(record)
            return records

        def collect(records: list[AttemptRecord]) -> None:
            for record in records:
                summary.attempts.append(record)
                if on_attempt:
                    on_attempt(record)

        remaining = []
        for pair in pairs:  # the probes, one at a time, before anything else
            if gates.wants_probe(pair.integration):
                collect(attempt_pairs([pair]))
            else:
                remaining.append(pair)
        # A user's due pairs run one after another on one worker: the second reuses the
        # access token the first refreshed, and a revoked grant costs one request, not one
        # per integration racing to discover it.
        by_user: dict[str, list[DuePair]] = {}
        for pair in remaining:
            by_user.setdefault(pair.user_id, []).append(pair)
        workers = max(1, runner.settings.concurrency)
        try:
            if workers == 1:  # in this thread, on its connection: no pool, no new connection
                for user_pairs in by_user.values():
                    collect(attempt_pairs(user_pairs))
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
                    for records in pool.map(attempt_pairs, by_user.values()):
                        collect(records)
        finally:
            runner.pool.close_finished_threads()
            runner.quota.release()  # the run's unspent grants go back to the budget
            # Most runs change no fleet breaker: those write nothing (no transaction at all).
            changed = gates.changed()
            if changed:
                with transaction(runner.db()) as tx:
                    fleet_breaker_store.save_fleet_breakers(tx, changed)
        summary.held = dict(gates.held)
        summary.notes = _run_notes(gates)
        return summary


def _gated_attempt(runner: Orchestrator, gates: RunGates, pair: DuePair) -> AttemptRecord | None:
    """One due pair through the run's gates (refused client, fleet breakers), then the pipeline;
    None when it is held back or its user was removed meanwhile."""
    client_id = pair.client_id
    admission = gates.admit(pair.integration, client_id)
    if admission.gate is FleetGate.HOLD:
        return None
    try:
        record, evidence = runner.attempt_with_evidence(
            pair.user_id,
            pair.integration,
            pair.trigger,
            probe=admission.gate in (FleetGate.PROBE, FleetGate.SINGLE),
            first_look=(pair.token_status, pair.breaker, pair.mass_delete_held),
        )
    except UserRemoved:  # `user remove` ran after this run-due listed the pair
        log.info("%s was removed during the run; not synced", pair.user_id)
        return None
    except PairBusy as busy:  # the receiver or a manual sync has it: it stays due, no row
        log.info("%s; not synced by this run", busy)
        return None
    refused = None
    if record.error_class is ErrorClass.CLIENT and client_id is not None:
        refused = (client_id, record.error_message or "refused")
    gates.record(
        evidence, admission.probes, runner.clock(), runner.settings, refused_client=refused
    )
    return record


def _run_notes(gates: RunGates) -> list[str]:
    """One line per refused OAuth client, and one per fleet breaker that opened in this run."""
    notes = [
        f"the OAuth client {client_id} was refused by Google: check its secret"
        f" ({gates.held.get('client refused', 0)} pair(s) not synced in this run)"
        for client_id in gates.refused_clients
    ]
    for api in gates.open_apis():
        if api in gates.was_open:
            continue  # reported by the run that opened it; `breaker list` shows it
        notes.append(
            f"fleet breaker open for {API_NAMES[api]}: most attempts failed; later runs probe it"
            " once first (`syncctl breaker reset --fleet` closes it)"
        )
    return notes


def check_tokens(
    runner: Orchestrator, user_ids: Sequence[str]
) -> dict[str, tuple[TokenStatus, str | None]]:
    """check_token for many users, `settings.concurrency` at a time (a fleet's refreshes are
    mostly waiting)."""
    workers = max(1, runner.settings.concurrency)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check") as pool:
            return dict(zip(user_ids, pool.map(runner.check_token, user_ids), strict=True))
    finally:
        runner.pool.close_finished_threads()


def reset_breakers(
    db: sqlite_utils.Database, user_id: str, integrations: Sequence[Integration]
) -> None:
    """An operator's reset: close the pairs' breakers and zero their counts."""
    with transaction(db) as tx:
        for integration in integrations:
            state_store.save_breaker(tx, user_id, integration, breaker_policy.reset())


def reset_active_breakers(db: sqlite_utils.Database) -> int:
    """`breaker reset --all`: close every breaker that is open, half-open or counting failures,
    in one transaction; how many there were."""
    with transaction(db) as tx:
        pairs = state_store.active_breaker_pairs(tx)
        for user_id, integration in pairs:
            state_store.save_breaker(tx, user_id, integration, breaker_policy.reset())
    return len(pairs)


def reset_fleet_breakers(db: sqlite_utils.Database) -> int:
    """An operator's reset of every fleet breaker; returns how many were open."""
    with transaction(db) as tx:
        return fleet_breaker_store.reset_fleet_breakers(tx)
