"""The simulator: one fleet, one script, several policies, and what each saves over naive polling.

Method.
- Every policy replays the same scenario (same seed: the same users and data, the same changes
  at the same virtual times, the same revocation and outage) on its own fake Google and its own
  database, with a virtual clock shared by the fake and the sync code. `run-due` runs at every
  step (cron's cadence, default 30 minutes) with one worker, so a seed reproduces the figures.
  Each run checks that it made exactly the same changes (`script_fingerprint`).
- `naive` runs as shards over disjoint users when there are several workers (each shard's fake
  holds the whole fleet and plays the whole script; only its own users are polled), and the
  shards' counts are added up: naive polls share no state between users, so the sum is what
  one run over the fleet measures. The orchestrated policies are never sharded (the fleet
  breaker and the quota budget are fleet-wide).
- API calls are what the fake Google counted: every HTTP request, token refreshes, retries,
  watch and stop calls included. Nothing is estimated on this side.
- `naive` is the counterfactual of SPEC 3.4: every pair synced at its default interval on a fixed
  grid through the engines, with no token gate, breaker, back-off or webhooks. A policy's
  measured saving is naive calls minus its calls, in total and per user profile (a profile is
  shaped by one mechanism: quiet, occasional and busy users by the adaptive schedule, the
  revoked user by the token gate, the failing user by the breaker).
- Savings per mechanism are also measured by ablation: the orchestrated run is repeated with one
  mechanism switched off and the mechanism is credited with (calls without it) - (calls with
  it). Switched off: `circuit_breaker` with a failure threshold no run reaches;
  `adaptive_schedule` with a no-change threshold no run reaches (every interval stays at its
  default, which makes healthy pairs poll exactly on the naive grid) and the calendar list
  listed on every sync (its own cadence is credited to the schedule too); `token_health` by
  forgetting every `revoked` verdict before each run-due, so each due slot of a revoked pair
  probes the grant again, as a poller without the gate would. `webhook` is orchestrated minus
  orchestrated-with-webhooks (a loopback receiver on the same virtual clock; each change's
  push is delivered before the clock moves on). Ablations answer "what would this fleet cost
  without this one mechanism"; they need not add up to naive minus orchestrated, because the
  mechanisms interact.
- What the report claimed is `syncctl report`'s own figure for the run: the sum of
  `sync_metrics.api_calls_saved`, by `saved_by` (estimation method in `syncctl.policy.savings`),
  and per profile the same sum over the profile's users. Every claim is measured against the
  same counterfactual as the measured saving (naive polling), so per profile and in total the
  claim's error (claimed - measured) / measured is printed beside it. Per mechanism it is set
  beside the ablation; for `webhook` beside the rise of the total claim when webhooks are
  switched on (the webhooks run credits to `webhook` whole stretches the orchestrated run
  credits partly to `adaptive_schedule`).
- Scenarios (`--scenario`): `outage` (all of Google down for 6 hours) and `client-rotation`
  (the OAuth client secret rotated, the fleet re-imported 2 hours later) add a window; the
  calls the fake counted inside it are printed per policy, with the users asked to reconnect
  and the attempts refused as `client`.
- With webhooks, the fake Google drops a share of the change notifications (seeded; default
  1%), as Google may. The receiver's own dispatch is modelled on the virtual clock: the first
  valid notification of a user opens a coalescing window (`webhook_coalesce_seconds`, default
  2 s), later ones join it, and one calendar sync (trigger `webhook`) runs the moment the window
  closes, before any later script event. A dropped notification's change waits for a later
  notification, or for polling.
- The oracle (simulation/oracle.py) is the lower bound every policy is set against: one
  request per change burst (a listing holding changes made at one moment) plus the token
  refreshes those bursts need; a policy's ratio is its calls divided by the oracle's.
- Staleness is, per change made at the fake, the virtual time from the change to the first
  successful sync of its (user, integration) at or after it (nearest-rank p50/p95). Changes that
  no sync picked up before the end (a revoked or failing user's, and the latest ones) are
  counted, not timed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncctl.config import Settings
from syncctl.model import Integration, SavedBy, TokenStatus
from syncctl.simulation.oracle import Oracle, ratio
from syncctl.simulation.runs import (
    Measures,
    PolicyRun,
    naive_shard,
    run_naive,
    run_orchestrated,
    summarize,
)
from syncctl.simulation.scenario import Scenario, make_scenario
from syncctl.simulation.stage import Stage, scratch_directory
from syncctl.store import state as state_store
from syncctl.store import transaction

UNREACHABLE = 10**9  # a threshold no simulated run reaches: the mechanism never acts
SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)  # fixed, so a seed reproduces every figure
# Naive polling shares nothing between users, so it runs as this many shards a worker: they
# fill the workers evenly around the longer policies (see runs.naive_shard).
NAIVE_SHARDS_PER_WORKER = 4
DEFAULT_DROP_SHARE = 0.01  # Google does not promise delivery: 1% of notifications never arrive


@dataclass(frozen=True)
class Policy:
    """One way of running the fleet."""

    name: str
    description: str
    ablates: SavedBy | None = None  # the mechanism this run switches off
    overrides: dict[str, Any] = field(default_factory=dict)


NAIVE = Policy("naive", "fixed polling at the default interval, no gates")
ORCHESTRATED = Policy("orchestrated", "run-due: token gate, breaker, adaptive schedule")
WEBHOOKS = Policy("webhooks", "orchestrated, with calendar watch channels (SYNCCTL_WEBHOOK_URL)")
ABLATIONS = (
    Policy(
        "no_breaker",
        "orchestrated without the circuit breaker",
        SavedBy.CIRCUIT_BREAKER,
        {"breaker_failure_threshold": UNREACHABLE},
    ),
    Policy(
        "no_adaptive",
        "orchestrated without the adaptive schedule (nor the calendar list's own cadence)",
        SavedBy.ADAPTIVE_SCHEDULE,
        {"no_change_threshold": UNREACHABLE, "calendar_list_refresh_seconds": 0},
    ),
    Policy("no_token_gate", "orchestrated without the token gate", SavedBy.TOKEN_HEALTH),
)


def simulation_scenario(
    *,
    users: int,
    days: int,
    seed: int,
    step_seconds: int,
    kind: str = "standard",
    drop_share: float = DEFAULT_DROP_SHARE,
) -> Scenario:
    """The simulator's scenario: `users` users over `days` days from a fixed start; Google
    drops `drop_share` of the change notifications."""
    scenario = make_scenario(
        users=users,
        days=days,
        seed=seed,
        start=SIMULATION_START,
        step_seconds=step_seconds,
        kind=kind,
    )
    return replace(scenario, drop_share=drop_share)


def forget_revocations(stage: Stage) -> None:
    """Set every `revoked` token verdict back to `unknown` (the token-gate ablation)."""
    conn = stage.db.conn
    revoked = [
        row for row in state_store.list_token_health(conn) if row["status"] == TokenStatus.REVOKED
    ]
    if not revoked:
        return
    with transaction(stage.db) as tx:
        for row in revoked:
            integration = Integration(row["integration_type"])
            state_store.save_token_health(
                tx, row["user_id"], [integration], TokenStatus.UNKNOWN, now=stage.clock.now()
            )


def run_policy(policy: Policy, scenario: Scenario, base: Settings, workdir: Path) -> PolicyRun:
    """Run one policy over the scenario in `workdir` (a process-pool task)."""
    db_path = workdir / f"{policy.name}.db"
    if policy.name == NAIVE.name:
        return run_naive(scenario, base, db_path)
    settings = replace(base, **policy.overrides)
    hook = forget_revocations if policy.ablates is SavedBy.TOKEN_HEALTH else None
    return run_orchestrated(
        scenario,
        settings,
        db_path,
        name=policy.name,
        before_step=hook,
        webhooks=policy.name == WEBHOOKS.name,
    )


def run_naive_shard(
    scenario: Scenario, base: Settings, workdir: Path, shard: int, shards: int
) -> Measures:
    """Naive polling of every `shards`-th user from the `shard`-th (a process-pool task)."""
    users = None if shards == 1 else [user.user_id for user in scenario.users[shard::shards]]
    return naive_shard(scenario, base, workdir / f"{NAIVE.name}-{shard}.db", users)


def merged(parts: list[Measures]) -> Measures:
    """The measures of one run from those of its shards."""
    total, *rest = parts
    for part in rest:
        total.merge(part)
    return total


def webhooks_unavailable() -> str | None:
    """Why the webhook policy cannot run in this build (None when it can)."""
    try:
        from syncctl import receiver
    except ImportError:
        return "syncctl.receiver is not part of this build"
    if not hasattr(receiver, "make_receiver"):
        return "syncctl.receiver has no make_receiver"
    return None


def simulate(
    scenario: Scenario,
    base: Settings,
    *,
    workers: int | None = None,
    on_done: Callable[[PolicyRun], None] | None = None,
    ablations: bool = True,
) -> dict:
    """Run every available policy (and, unless switched off, each ablation) over the scenario;
    return the comparison."""
    policies = [NAIVE, ORCHESTRATED, *(ABLATIONS if ablations else ())]
    unavailable = {}
    reason = webhooks_unavailable()
    if reason is None:
        policies.insert(2, WEBHOOKS)
    else:
        unavailable[WEBHOOKS.name] = reason
    workers = max(1, min(len(policies), workers or os.cpu_count() or 1))
    shards = 1 if workers == 1 else min(len(scenario.users), NAIVE_SHARDS_PER_WORKER * workers)
    runs: dict[str, PolicyRun] = {}
    with scratch_directory("syncctl-sim-") as workdir, _executor(workers) as pool:
        # The longest tasks first, then naive's shards fill the workers up evenly.
        futures: dict[Future[Any], Policy] = {
            pool.submit(run_policy, policy, scenario, base, workdir): policy
            for policy in policies
            if policy is not NAIVE
        }
        for shard in range(shards):
            futures[pool.submit(run_naive_shard, scenario, base, workdir, shard, shards)] = NAIVE
        naive_parts: list[Measures] = []
        for future in as_completed(futures):
            if futures[future] is NAIVE:
                naive_parts.append(future.result())
                if len(naive_parts) < shards:
                    continue
                run = summarize(NAIVE.name, scenario, merged(naive_parts), None)
            else:
                run = future.result()
            runs[run.policy] = run
            if on_done is not None:
                on_done(run)
    ordered = [runs[p.name] for p in policies]
    fingerprints = {run.script_fingerprint for run in ordered}
    if len(fingerprints) != 1:
        raise RuntimeError("the policies did not replay the same changes; the comparison is void")
    return compare(scenario, policies, ordered, unavailable)


@contextmanager
def _executor(workers: int) -> Iterator[Executor]:
    if workers == 1:
        with _InlineExecutor() as pool:
            yield pool
        return
    # Each policy runs in its own process: the runs share nothing, and one process per CPU is
    # the only way past the GIL (the fake Google and the client share each run's process).
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield pool


class _InlineExecutor(Executor):
    """Runs tasks in the calling thread (one worker: no process to start)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


def compare(
    scenario: Scenario,
    policies: list[Policy],
    runs: list[PolicyRun],
    unavailable: dict[str, str],
) -> dict:
    """The comparison as plain data: per policy, per mechanism, and the report's claims."""
    by_name = {run.policy: run for run in runs}
    by_policy = {policy.name: policy for policy in policies}
    naive = by_name[NAIVE.name].api_calls
    oracle = by_name[NAIVE.name].oracle  # every run made the same changes: one bound for all
    orchestrated = by_name[ORCHESTRATED.name]
    claimed = orchestrated.claimed or {"saved": 0, "saved_by": {}}
    mechanisms = []
    for policy in policies:
        if policy.ablates is None:
            continue
        measured = by_name[policy.name].api_calls - orchestrated.api_calls
        claim = claimed["saved_by"].get(policy.ablates.value, 0)
        mechanisms.append(
            _mechanism(
                policy.ablates,
                f"{policy.name} - orchestrated",
                measured,
                f"orchestrated saved_by {policy.ablates.value}",
                claim,
            )
        )
    measured_by_ablation = sum(m["measured"] for m in mechanisms)
    if WEBHOOKS.name in by_name:
        webhooks = by_name[WEBHOOKS.name]
        measured = orchestrated.api_calls - webhooks.api_calls
        # The webhooks run credits `webhook` with whole stretches the orchestrated run credits
        # partly to `adaptive_schedule`: what webhooks add is the rise of the total claim.
        claim = (webhooks.claimed or {"saved": 0})["saved"] - claimed["saved"]
        mechanisms.append(
            _mechanism(
                SavedBy.WEBHOOK,
                "orchestrated - webhooks",
                measured,
                "webhooks claimed - orchestrated claimed",
                claim,
            )
        )
    naive_run = by_name[NAIVE.name]
    profiles = {
        run.policy: _profile_rows(naive_run, run)
        for run in runs
        if run.claimed_by_profile is not None and by_policy[run.policy].ablates is None
    }
    return {
        "scenario": scenario.summary(),
        "oracle": None if oracle is None else oracle.as_dict(),
        "policies": [
            _policy_figures(policy, by_name[policy.name], naive, oracle) for policy in policies
        ],
        "unavailable": [{"policy": k, "reason": v} for k, v in unavailable.items()],
        "mechanisms": mechanisms,
        "profiles": profiles,
        "totals": {
            "naive_calls": naive,
            "orchestrated_calls": orchestrated.api_calls,
            "measured_saved": naive - orchestrated.api_calls,
            "claimed_saved": claimed["saved"],
            "measured_by_ablation": measured_by_ablation,
            "claim_error_percent": claim_error_percent(
                claimed["saved"], naive - orchestrated.api_calls
            ),
            **_webhook_totals(by_name.get(WEBHOOKS.name), naive),
        },
        "window": _window_figures(scenario, runs, policies),
    }


def claim_error_percent(claimed: int, measured: int) -> float | None:
    """(claimed - measured) / |measured| in percent; None when nothing was measured."""
    if measured == 0:
        return None
    return round(100.0 * (claimed - measured) / abs(measured), 1)


def _window_figures(
    scenario: Scenario, runs: list[PolicyRun], policies: list[Policy]
) -> dict | None:
    """Calls inside the outage or rotation window, per policy, and as a share of naive's."""
    window = scenario.window()
    if window is None:
        return None
    ablations = {p.name for p in policies if p.ablates is not None}
    naive = next(r.window_calls for r in runs if r.policy == NAIVE.name) or 0
    return {
        "kind": scenario.kind,
        "start": window[0].isoformat(),
        "end": window[1].isoformat(),
        "policies": [
            {
                "policy": run.policy,
                "calls": run.window_calls,
                "percent_of_naive": round(100.0 * (run.window_calls or 0) / naive, 1)
                if naive
                else None,
                "reconnect_notices": run.reconnect_notices,
                "client_refusals": run.client_refusals,
            }
            for run in runs
            if run.policy not in ablations
        ],
    }


def _webhook_totals(run: PolicyRun | None, naive: int) -> dict:
    if run is None:
        return {
            "webhooks_calls": None,
            "webhooks_measured_saved": None,
            "webhooks_claimed_saved": None,
            "webhooks_claim_error_percent": None,
        }
    claimed = run.claimed or {"saved": 0}
    return {
        "webhooks_calls": run.api_calls,
        "webhooks_measured_saved": naive - run.api_calls,
        "webhooks_claimed_saved": claimed["saved"],
        "webhooks_claim_error_percent": claim_error_percent(
            claimed["saved"], naive - run.api_calls
        ),
    }


def _profile_rows(naive: PolicyRun, run: PolicyRun) -> list[dict]:
    """Per user profile: naive calls, the policy's calls, the difference, what was claimed."""
    claimed = run.claimed_by_profile or {}
    rows = []
    for name in sorted(set(naive.calls_by_profile) | set(run.calls_by_profile)):
        measured = naive.calls_by_profile.get(name, 0) - run.calls_by_profile.get(name, 0)
        rows.append(
            {
                "profile": name,
                "naive_calls": naive.calls_by_profile.get(name, 0),
                "policy_calls": run.calls_by_profile.get(name, 0),
                "measured_saved": measured,
                "claimed": claimed.get(name, 0),
                "claimed_minus_measured": claimed.get(name, 0) - measured,
                "claim_error_percent": claim_error_percent(claimed.get(name, 0), measured),
            }
        )
    return rows


def _mechanism(
    mechanism: SavedBy, measured_by: str, measured: int, claimed_by: str, claimed: int
) -> dict:
    return {
        "mechanism": mechanism.value,
        "measured_by": measured_by,
        "measured": measured,
        "claimed_by": claimed_by,
        "claimed": claimed,
        "claimed_minus_measured": claimed - measured,
    }


def _policy_figures(policy: Policy, run: PolicyRun, naive: int, oracle: Oracle | None) -> dict:
    saved = naive - run.api_calls
    return {
        "policy": run.policy,
        "description": policy.description,
        "api_calls": run.api_calls,
        "saved_vs_naive": saved,
        "saved_percent": round(100.0 * saved / naive, 1) if naive else None,
        "oracle_ratio": None if oracle is None else ratio(run.api_calls, oracle),
        "attempts": run.attempts,
        "notifications": run.notifications,
        "calls_by_profile": run.calls_by_profile,
        "calls_by_endpoint": run.calls_by_endpoint,
        "report_claimed": run.claimed,
        "staleness": {name: s.as_dict() for name, s in run.staleness.items()},
        "script_fingerprint": run.script_fingerprint,
        "wall_seconds": run.wall_seconds,
    }
