"""The simulator: reproducible scenarios, identical replays, and the report's claimed savings
checked against savings measured at the fake Google."""

from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import Settings
from syncctl.model import Integration
from syncctl.simulation import compare
from syncctl.simulation.clock import VirtualClock
from syncctl.simulation.runs import measure_staleness
from syncctl.simulation.scenario import Action, Profile, assign_profiles, make_scenario
from syncctl.simulation.stage import Change

START = datetime(2026, 1, 5, tzinfo=UTC)
CAL, CON = Integration.CALENDAR, Integration.CONTACTS
HEALTHY = ("busy", "occasional", "quiet")
# The most a naive poll of one pair costs in these fleets: a token refresh, the calendar list
# and the events of at most three calendars.
MAX_CALLS_PER_POLL = 5


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


# -- scenarios -------------------------------------------------------------------------------


def test_same_seed_gives_the_same_scenario_and_another_seed_another_script():
    first = make_scenario(users=8, days=3, seed=4, start=START)
    assert make_scenario(users=8, days=3, seed=4, start=START) == first
    assert make_scenario(users=8, days=3, seed=5, start=START).script != first.script


def test_second_user_is_revoked_third_failing_the_rest_cycle_busy_quiet_occasional():
    assert assign_profiles(7) == [
        Profile.BUSY,
        Profile.REVOKED,
        Profile.FAILING,
        Profile.QUIET,
        Profile.OCCASIONAL,
        Profile.BUSY,
        Profile.QUIET,
    ]


def test_fleets_under_four_users_have_no_revoked_or_failing_user():
    assert assign_profiles(3) == [Profile.BUSY, Profile.QUIET, Profile.OCCASIONAL]


def test_grant_is_revoked_a_third_of_the_way_and_failures_start_half_way():
    scenario = make_scenario(users=6, days=3, seed=0, start=START)
    assert scenario.moment_of(Action.REVOKE) == at(24)
    assert scenario.moment_of(Action.FAIL) == at(36)
    assert {e.user_id for e in scenario.script if e.action is Action.REVOKE} == {"user-02"}
    assert {e.user_id for e in scenario.script if e.action is Action.FAIL} == {"user-03"}


def test_quiet_users_get_no_change_and_every_change_falls_inside_the_span():
    scenario = make_scenario(users=12, days=4, seed=1, start=START)
    quiet = {u.user_id for u in scenario.users if u.profile is Profile.QUIET}
    changes = [e for e in scenario.script if e.action is Action.CHANGE]
    assert quiet and not [e for e in changes if e.user_id in quiet]
    assert all(START <= e.at < scenario.end for e in changes)
    assert [e.at for e in scenario.script] == sorted(e.at for e in scenario.script)


def test_steps_run_from_start_to_end_inclusive():
    scenario = make_scenario(users=1, days=1, seed=0, start=START, step_seconds=6 * 3600)
    assert list(scenario.steps()) == [at(0), at(6), at(12), at(18), at(24)]


def test_virtual_clock_moves_only_forward_and_sleep_returns_at_once():
    clock = VirtualClock(START)
    clock.sleep(30.0)
    clock.sleep(2.5)
    assert clock.now() == START
    assert clock.slept_seconds == 32.5
    clock.advance_to(at(1))
    with pytest.raises(ValueError):
        clock.advance_to(at(0))


# -- staleness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change_at", "sync_times", "expected"),
    [
        (at(1), [at(0), at(2), at(3)], 3600),  # the first success after the change
        (at(2), [at(0), at(2), at(3)], 0),  # a sync at the change's instant covers it
        (at(1), [at(1.5)], 1800),
        (at(4), [at(0), at(2)], None),  # no success after it: not mirrored
        (at(1), [], None),
    ],
)
def test_staleness_is_the_time_to_the_first_success_at_or_after_the_change(
    change_at, sync_times, expected
):
    figures = measure_staleness([Change(change_at, "u1", CAL)], {("u1", CAL): sync_times})
    assert figures["calendar"].p50_seconds == expected
    assert figures["calendar"].not_mirrored == (1 if expected is None else 0)


def test_staleness_percentiles_are_nearest_rank_per_integration_and_overall():
    changes = [Change(at(0), "u1", CAL)] * 19 + [Change(at(0), "u1", CON)]
    successes = {("u1", CAL): [at(1)], ("u1", CON): [at(10)], ("u2", CAL): [at(0)]}
    figures = measure_staleness(changes, successes)
    assert (figures["calendar"].p50_seconds, figures["calendar"].p95_seconds) == (3600, 3600)
    assert (figures["contacts"].changes, figures["contacts"].max_seconds) == (1, 36000)
    assert (figures["all"].changes, figures["all"].p95_seconds) == (20, 3600)
    assert figures["all"].max_seconds == 36000


# -- one simulated fleet under every policy --------------------------------------------------


@pytest.fixture(scope="module")
def comparison() -> dict:
    scenario = compare.simulation_scenario(users=6, days=3, seed=0, step_seconds=1800)
    return compare.simulate(scenario, Settings(), workers=2)


def by_policy(comparison: dict) -> dict[str, dict]:
    return {p["policy"]: p for p in comparison["policies"]}


def by_profile(comparison: dict, policy: str = "orchestrated") -> dict[str, dict]:
    return {p["profile"]: p for p in comparison["profiles"][policy]}


def test_the_report_names_its_counterfactual_beside_the_figure(comparison):
    claimed = by_policy(comparison)["orchestrated"]["report_claimed"]
    assert claimed["counterfactual"].startswith("naive polling")


def test_every_policy_replays_the_same_changes(comparison):
    policies = by_policy(comparison)
    names = {"naive", "orchestrated", "webhooks", "no_breaker", "no_adaptive", "no_token_gate"}
    assert set(policies) == names
    assert len({p["script_fingerprint"] for p in policies.values()}) == 1
    changes = comparison["scenario"]["changes"]
    assert changes > 0
    assert {p["staleness"]["all"]["changes"] for p in policies.values()} == {changes}


def test_webhooks_open_channels_and_push_calendar_changes_in_within_one_run_due(comparison):
    webhooks = by_policy(comparison)["webhooks"]
    assert webhooks["calls_by_endpoint"]["calendar.events.watch"] > 0
    assert webhooks["attempts"]["success"] > 0
    step = comparison["scenario"]["step_seconds"]
    assert webhooks["staleness"]["calendar"]["p95_seconds"] <= step
    orchestrated = by_policy(comparison)["orchestrated"]
    # contacts have no push; a contacts poll due soon runs early on a notified sync's fresh
    # token (policy/fresh_token.py), so contacts are polled no later than without webhooks
    contacts, polled = webhooks["staleness"]["contacts"], orchestrated["staleness"]["contacts"]
    assert contacts["changes"] == polled["changes"]
    assert contacts["p50_seconds"] <= polled["p50_seconds"]
    assert contacts["max_seconds"] <= polled["max_seconds"]


def test_webhooks_spend_fewer_calls_than_polling_on_every_reachable_user(comparison):
    for name, row in by_profile(comparison, "webhooks").items():
        if name != "failing":
            assert row["policy_calls"] < by_profile(comparison)[name]["policy_calls"], row
    mechanisms = {m["mechanism"]: m for m in comparison["mechanisms"]}
    assert mechanisms["webhook"]["measured"] > 0
    assert mechanisms["webhook"]["claimed"] > 0


def test_orchestrated_spends_fewer_calls_than_naive_polling_on_every_reachable_user(comparison):
    profiles = by_profile(comparison)
    reachable = [p for name, p in profiles.items() if name != "failing"]
    for row in reachable:
        assert row["policy_calls"] < row["naive_calls"], row
    naive = sum(p["naive_calls"] for p in reachable)
    orchestrated = sum(p["policy_calls"] for p in reachable)
    assert naive > orchestrated


def test_a_failing_user_costs_no_more_than_naive_polling(comparison):
    # A transient failure is retried after 5 then 10 minutes, the breaker opens at the third for
    # an hour, and each failed single-probe trial doubles the window up to the pair's interval.
    for policy in ("orchestrated", "webhooks"):
        failing = by_profile(comparison, policy)["failing"]
        assert failing["policy_calls"] <= failing["naive_calls"], failing


def test_without_back_off_healthy_users_cost_exactly_what_naive_polling_costs(comparison):
    # The orchestrator with its schedule pinned at the default interval polls a healthy pair on
    # the naive grid: the naive baseline is the orchestrator's own cadence, not a strawman.
    policies = by_policy(comparison)
    for name in HEALTHY:
        naive = policies["naive"]["calls_by_profile"][name]
        assert policies["no_adaptive"]["calls_by_profile"][name] == naive


@pytest.mark.parametrize("policy", ["orchestrated", "webhooks"])
def test_report_claims_per_profile_are_within_10_percent_or_20_calls_of_the_measured(
    comparison, policy
):
    # One counterfactual (naive polling) for every mechanism: what the report claimed is what
    # the fake counted naive polling sending minus what the policy sent.
    for row in by_profile(comparison, policy).values():
        error = abs(row["claimed_minus_measured"])
        assert error <= max(20, abs(row["measured_saved"]) / 10), row
    # In total too (this 6-user, 3-day fleet is small: 10% or 20 calls, as per profile; the
    # pairs' last naive polls after their last attempt are claimed by no attempt yet).
    totals = comparison["totals"]
    prefix = "" if policy == "orchestrated" else "webhooks_"
    measured = totals["measured_saved" if policy == "orchestrated" else "webhooks_measured_saved"]
    claimed = totals["claimed_saved" if policy == "orchestrated" else "webhooks_claimed_saved"]
    assert abs(claimed - measured) <= max(20, abs(measured) / 10), totals
    assert totals[f"{prefix}claim_error_percent"] is not None


def test_profile_claims_add_up_to_the_report_total(comparison):
    orchestrated = by_policy(comparison)["orchestrated"]
    claimed = orchestrated["report_claimed"]
    assert sum(p["claimed"] for p in comparison["profiles"]["orchestrated"]) == claimed["saved"]
    assert sum(claimed["saved_by"].values()) == claimed["saved"]
    assert comparison["totals"]["claimed_saved"] == claimed["saved"]


def test_breaker_claim_is_what_the_failing_pair_spent_less_than_naive_polling(comparison):
    mechanisms = {m["mechanism"]: m for m in comparison["mechanisms"]}
    failing = by_profile(comparison)["failing"]
    assert mechanisms["circuit_breaker"]["measured"] > 0
    assert failing["claimed"] > 0
    assert abs(failing["claimed"] - failing["measured_saved"]) <= 20


def test_adaptive_claim_is_within_one_naive_poll_per_pair_of_its_ablation(comparison):
    mechanisms = {m["mechanism"]: m for m in comparison["mechanisms"]}
    adaptive = mechanisms["adaptive_schedule"]
    pairs = 2 * comparison["scenario"]["users"]
    assert adaptive["measured"] > 0
    assert abs(adaptive["claimed_minus_measured"]) <= MAX_CALLS_PER_POLL * pairs


def test_token_gate_claim_is_between_one_and_cap_times_its_ablation(comparison):
    # A skip claims interval/default refreshes (1 up to the interval cap, 2x), the refreshes a
    # naive poller would send; without the gate the orchestrator sends one per slot of its
    # (possibly backed-off) interval.
    mechanisms = {m["mechanism"]: m for m in comparison["mechanisms"]}
    gate = mechanisms["token_health"]
    assert gate["measured"] > 0
    assert gate["measured"] - 2 <= gate["claimed"] <= 2 * gate["measured"] + 2


def test_changes_of_the_revoked_and_failing_users_are_never_mirrored(comparison):
    orchestrated = by_policy(comparison)["orchestrated"]["staleness"]
    assert orchestrated["all"]["not_mirrored"] > 0
    assert orchestrated["calendar"]["p50_seconds"] <= orchestrated["calendar"]["p95_seconds"]
    assert orchestrated["calendar"]["p95_seconds"] < 24 * 3600


# -- outage and client-rotation scenarios ----------------------------------------------------


def test_the_outage_and_rotation_scenarios_add_a_window_to_the_same_script():
    standard = make_scenario(users=6, days=3, seed=2, start=START)
    outage = make_scenario(users=6, days=3, seed=2, start=START, kind="outage")
    rotation = make_scenario(users=6, days=3, seed=2, start=START, kind="client-rotation")

    def changes(scenario):
        return [(e.at, e.user_id, e.count) for e in scenario.script if e.action is Action.CHANGE]

    for scenario in (outage, rotation):
        assert changes(scenario) == changes(standard)
    assert outage.window() == (at(36), at(42))  # noon of the middle day, for six hours
    assert rotation.window() == (at(36), at(38))  # fixed two hours later
    assert standard.window() is None
    with pytest.raises(ValueError, match="unknown scenario"):
        make_scenario(users=6, days=3, seed=2, start=START, kind="flood")


# A small fleet's run-due has too few attempts to trip the fleet breaker at its defaults (20 in
# 15 minutes); these settings scale the evidence down to the fleet.
SMALL_FLEET = Settings(fleet_breaker_min_attempts=3, fleet_breaker_window_seconds=3600)


@pytest.mark.parametrize(
    ("kind", "settings"), [("outage", SMALL_FLEET), ("client-rotation", Settings())]
)
def test_inside_the_window_the_orchestrator_sends_less_than_naive_and_revokes_nobody(
    kind, settings
):
    scenario = compare.simulation_scenario(users=8, days=1, seed=3, step_seconds=1800, kind=kind)
    result = compare.simulate(scenario, settings, workers=2, ablations=False)
    window = {p["policy"]: p for p in result["window"]["policies"]}
    assert window["naive"]["calls"] > window["orchestrated"]["calls"] > 0
    # only the revoked profile's user is asked to reconnect: a refused client judges nobody
    assert window["orchestrated"]["reconnect_notices"] == 1
    if kind == "client-rotation":
        assert window["orchestrated"]["client_refusals"] >= 1
