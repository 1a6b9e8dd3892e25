"""The fleet loops around the pipeline: run-due, its dry run, token checks, breaker resets.

Each loop lists candidates with the store, decides with the same policy functions an attempt
uses (`policy.gate`, `policy.schedule.is_due`) and runs attempts on K worker threads, K being
`settings.concurrency` (flags meet settings in the CLI, `Settings.with_overrides`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import sqlite_utils

from syncctl.clock import from_iso, to_iso
from syncctl.model import (
    AttemptRecord,
    DuePair,
    Integration,
    Result,
    SkipReason,
    TokenStatus,
    Trigger,
)
from syncctl.orchestrator import Orchestrator, UserRemoved
from syncctl.policy import breaker as breaker_policy
from syncctl.policy.gate import gate
from syncctl.policy.schedule import is_due
from syncctl.runlock import run_due_lock
from syncctl.store import state as state_store
from syncctl.store import transaction
from syncctl.store.sync_tokens import has_sync_tokens

log = logging.getLogger("syncctl.fleet")


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


def due_now(runner: Orchestrator, limit: int | None = None) -> list[DuePair]:
    """The pairs due at this moment, most overdue first (the index narrows, the policy decides)."""
    now = runner.clock()
    candidates = state_store.due_pairs(runner.db().conn, now, limit)
    return [
        pair
        for pair in candidates
        if is_due(from_iso(pair.next_sync_at), now, held=pair.mass_delete_held)
    ]


def plan_due(runner: Orchestrator, *, limit: int | None = None) -> list[PlannedAttempt]:
    """What run-due would do now and why, changing nothing."""
    conn = runner.db().conn
    now = runner.clock()
    plans = []
    for pair in state_store.due_pairs(conn, now, limit):
        if not is_due(from_iso(pair.next_sync_at), now, held=pair.mass_delete_held):
            continue
        decision = gate(pair.token_status, pair.breaker, now, runner.settings)
        if decision.skip_reason is SkipReason.INVALID_TOKEN:
            action, reason = "skip", "invalid_token: the grant is revoked; user must reconnect"
        elif decision.skip_reason is SkipReason.CIRCUIT_OPEN:
            retry_at = pair.breaker.next_retry_at
            retry = to_iso(retry_at) if retry_at else "?"
            action, reason = "skip", f"circuit_open: breaker open until {retry}"
        else:
            incremental = has_sync_tokens(conn, pair.user_id, pair.integration)
            kind = "incremental" if incremental else "full"
            trial = " (half-open trial)" if decision.trial else ""
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
    database."""
    runner.db()  # a missing or refused database is reported before any lock file is made
    with run_due_lock(runner.settings.db_path) as acquired:
        if not acquired:
            return None
        pairs = due_now(runner, limit)
        if on_start:
            on_start(len(pairs))
        summary = RunSummary()
        # A user's due pairs run one after another on one worker: the second reuses the
        # access token the first refreshed, and a revoked grant costs one request, not one
        # per integration racing to discover it.
        by_user: dict[str, list[DuePair]] = {}
        for pair in pairs:
            by_user.setdefault(pair.user_id, []).append(pair)

        def attempt_pairs(user_pairs: Sequence[DuePair]) -> list[AttemptRecord]:
            records = []
            for pair in user_pairs:
                try:
                    records.append(runner.attempt(pair.user_id, pair.integration, pair.trigger))
                except UserRemoved:  # `user remove` ran after this run-due listed the pair
                    log.info("%s was removed during the run; not synced", pair.user_id)
            return records

        workers = max(1, runner.settings.concurrency)
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
                for records in pool.map(attempt_pairs, by_user.values()):
                    for record in records:
                        summary.attempts.append(record)
                        if on_attempt:
                            on_attempt(record)
        finally:
            runner.pool.close_finished_threads()
        return summary


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
