"""`syncctl demo` and `syncctl simulate`: the fake Google and the orchestrator, virtual time."""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Annotated, Any

import typer

from syncctl.cli import _output
from syncctl.cli._context import app_state
from syncctl.cli.report import print_report_tables
from syncctl.clock import utcnow
from syncctl.config import Env
from syncctl.report import parse_duration
from syncctl.report_render.cells import human_duration
from syncctl.secrets import throwaway_key
from syncctl.simulation.scenario import SCENARIO_KINDS
from syncctl.users import BadInput


def demo_command(
    ctx: typer.Context,
    users: Annotated[int, typer.Option("--users", min=4, max=50, help="Fleet size.")] = 8,
    days: Annotated[int, typer.Option("--days", min=1, max=14, help="Simulated days.")] = 3,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=2**63 - 1, help="Seed of the fleet and its changes.")
    ] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run a generated fleet on a fake Google over simulated days, then print the report.

    Nothing is kept unless the global --db names a new database file (SYNCCTL_DB is ignored).

    Example: syncctl --db demo.db demo && syncctl --db demo.db report --user demo-02
    """
    source = ctx.find_root().get_parameter_source("db")
    settings = app_state(ctx).settings
    keep = settings.db_path if source is not None and source.name == "COMMANDLINE" else None
    if keep is None and os.environ.get(Env.DB):
        _output.note(f"demo: {Env.DB} is ignored; pass --db to keep the demo's database")
    from syncctl.simulation.demo import check_new_database, demo_report, demo_scenario

    check_new_database(keep)
    scenario = demo_scenario(utcnow(), users=users, days=days, seed=seed)
    _output.note(
        f"demo: {users} users on a fake Google; run-due every 30 simulated minutes for {days}"
        f" days ({scenario.start:%Y-%m-%d %H:%M} to {scenario.end:%Y-%m-%d %H:%M} UTC)"
    )
    # A kept database needs the lasting key (made if need be); a scratch one a throwaway key.
    with nullcontext() if keep is not None else throwaway_key():
        report = demo_report(scenario, settings, keep, on_day=_note_day)
    if json_output:
        _output.print_json(report)
    else:
        print_report_tables(report)
    if keep is None:
        _output.note("demo: nothing was kept (`syncctl --db demo.db demo` keeps the database)")
    else:
        _output.note(
            f"demo: database kept at {keep}; try `syncctl --db {keep} report --user demo-02`"
        )


def _note_day(progress: Any) -> None:
    _output.note(progress.line())
    for happening in progress.happenings:
        _output.note(f"  {happening}")


def simulate_command(
    ctx: typer.Context,
    users: Annotated[int, typer.Option("--users", min=4, max=2000, help="Fleet size.")] = 10,
    days: Annotated[int, typer.Option("--days", min=1, max=90, help="Simulated days.")] = 7,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=2**63 - 1, help="Seed of the fleet and its changes.")
    ] = 0,
    step: Annotated[
        str, typer.Option("--step", help="How often cron runs run-due: 5m, 30m, 1h.")
    ] = "30m",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=256, help="Processes (default: one per CPU)."),
    ] = None,
    scenario_kind: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="standard; outage (all of Google down for 6 h mid-run); client-rotation (the"
            " OAuth client secret rotated, the fleet re-imported 2 h later).",
        ),
    ] = "standard",
    ablations: Annotated[
        bool,
        typer.Option(
            "--ablations/--no-ablations", help="Also run each mechanism switched off (slower)."
        ),
    ] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Replay one fleet under naive polling, the orchestrator (with and without webhooks) and its
    ablations; compare API calls, savings measured and as the report claimed, and staleness.

    Example: syncctl simulate --days 14 --seed 7 --json > simulation.json
    """
    from syncctl.simulation import compare  # the simulator loads the Google stack

    step_seconds = int(parse_duration(step).total_seconds())
    if scenario_kind not in SCENARIO_KINDS:
        raise BadInput(f"unknown scenario {scenario_kind!r} (use {', '.join(SCENARIO_KINDS)})")
    scenario = compare.simulation_scenario(
        users=users, days=days, seed=seed, step_seconds=step_seconds, kind=scenario_kind
    )
    _output.note(
        f"simulate: {users} users, {days} days, run-due every {human_duration(step_seconds)}"
    )
    with throwaway_key():  # the simulator's databases are scratch ones
        result = compare.simulate(
            scenario,
            app_state(ctx).settings,
            workers=workers,
            ablations=ablations,
            on_done=lambda run: _output.note(
                f"simulate: {run.policy}: {run.api_calls} API calls ({run.wall_seconds} s)"
            ),
        )
    if json_output:
        _output.print_json(result)
    else:
        _print_comparison(result)


def _print_comparison(result: dict) -> None:
    scenario, policies = result["scenario"], result["policies"]
    _output.print_figures(
        f"API calls by policy ({scenario['users']} users, {scenario['days']} days,"
        f" seed {scenario['seed']}; same fleet, same {scenario['changes']} changes)",
        ["policy", "API calls", "saved vs naive", "saved %", "ok", "failed", "skipped"],
        [
            (
                p["policy"],
                p["api_calls"],
                p["saved_vs_naive"],
                _pct(p["saved_percent"]),
                p["attempts"]["success"],
                p["attempts"]["failure"],
                p["attempts"]["skipped"],
            )
            for p in policies
        ],
        caption="; ".join(f"{p['policy']}: {p['description']}" for p in policies),
    )
    users = scenario["profiles"]
    for policy, rows in result["profiles"].items():
        _output.print_figures(
            f"By user profile: naive - {policy}, measured and as the report claimed",
            [
                "profile",
                "users",
                "naive",
                policy,
                "measured",
                "claimed",
                "claimed - measured",
                "claim error",
            ],
            [
                (
                    p["profile"],
                    users.get(p["profile"], 0),
                    p["naive_calls"],
                    p["policy_calls"],
                    p["measured_saved"],
                    p["claimed"],
                    p["claimed_minus_measured"],
                    _pct(p["claim_error_percent"]),
                )
                for p in rows
            ],
            caption="measured = naive - policy calls; claimed = the report's api_calls_saved"
            " (counterfactual: naive polling at the default interval, same engines and retries)",
        )
    _output.print_figures(
        "Savings by mechanism: measured by ablation, and what the report claimed",
        ["mechanism", "measured", "claimed", "claimed - measured"],
        [
            (m["mechanism"], m["measured"], m["claimed"], m["claimed_minus_measured"])
            for m in result["mechanisms"]
        ],
        caption="measured: calls with the mechanism switched off minus calls with it; claimed:"
        " the orchestrated report's saved_by figure (webhook: calls of orchestrated minus"
        " webhooks, and the rise of the report's total claim when webhooks are on)",
    )
    _output.print_figures(
        "Staleness: change at Google -> in SQLite (p50 / p95)",
        ["policy", "calendar p50", "calendar p95", "contacts p50", "contacts p95", "not mirrored"],
        [
            (
                p["policy"],
                *_ages(p["staleness"]["calendar"]),
                *_ages(p["staleness"]["contacts"]),
                p["staleness"]["all"]["not_mirrored"],
            )
            for p in policies
        ],
        caption="not mirrored: changes no successful sync had picked up by the end (the revoked"
        " and failing users', and the latest ones); they are not in the percentiles",
    )
    window = result.get("window")
    if window:
        _output.print_figures(
            f"Inside the {window['kind']} window ({window['start']} - {window['end']})",
            ["policy", "API calls", "% of naive", "users asked to reconnect", "client refusals"],
            [
                (
                    p["policy"],
                    p["calls"],
                    _pct(p["percent_of_naive"]),
                    p["reconnect_notices"],
                    p["client_refusals"],
                )
                for p in window["policies"]
            ],
            caption="reconnect notices open at the end of the run (the revoked profile's"
            " included); client refusals: attempts that ended with error class client",
        )
    totals = result["totals"]
    _output.say(
        f"naive - orchestrated = {totals['measured_saved']} calls measured; the report claimed"
        f" {totals['claimed_saved']} against naive polling"
        f" ({_pct(totals['claim_error_percent'])} off); ablations measured"
        f" {totals['measured_by_ablation']}."
    )
    if totals["webhooks_calls"] is not None:
        _output.say(
            f"naive - webhooks = {totals['webhooks_measured_saved']} calls measured; the report"
            f" claimed {totals['webhooks_claimed_saved']}"
            f" ({_pct(totals['webhooks_claim_error_percent'])} off)."
        )
    if totals.get("oracle_calls"):
        ratios = ", ".join(
            f"{p['policy']} {p['oracle_ratio']}x"
            for p in result["policies"]
            if p.get("oracle_ratio")
        )
        _output.say(
            f"oracle lower bound: {totals['oracle_calls']} calls (one per change burst plus the"
            f" token refreshes those need); each policy's calls / oracle: {ratios}."
        )
    for item in result["unavailable"]:
        _output.say(f"{item['policy']}: not available ({item['reason']})")


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:g}%"


def _ages(block: dict) -> tuple[str | None, str | None]:
    return human_duration(block["p50_seconds"]), human_duration(block["p95_seconds"])
