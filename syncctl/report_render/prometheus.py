"""The report's figures as Prometheus text exposition, from one table of metric families."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from syncctl.clock import from_iso

GAUGE = "gauge"

Samples = list[tuple[dict[str, str], Any]]


class Metric(NamedTuple):
    """One metric family. Without labels, `value` reads the whole report. With labels, `value`
    reads each integration's figures in the report's `block` (a dotted path) and returns the
    sample, or, when a second label is named, a dict of that label's values to samples."""

    name: str
    help: str
    type: str
    labels: tuple[str, ...]
    value: Callable[[dict], Any]
    block: str | None = None
    per: str = "by_integration"  # the block's key of per-label figures (fleet: "by_api")


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


ONE = ()
PER = ("integration",)
API = ("api",)  # one sample per budgeted API, from the report's `quota.apis`

# Windowed figures are gauges, not counters: each report recomputes them over its window.
METRICS: tuple[Metric, ...] = (
    Metric("syncctl_report_generated_timestamp_seconds", "When the report was computed.", GAUGE,
           ONE, lambda r: from_iso(r["generated_at"]).timestamp()),
    Metric("syncctl_report_window_seconds", "Window of the syncctl_window_* gauges.", GAUGE,
           ONE, lambda r: r["window"]["seconds"]),
    Metric("syncctl_users", "Users known to syncctl.", GAUGE,
           ONE, lambda r: r["fleet"]["users"]),
    Metric("syncctl_users_with_integrations", "Users with at least one integration.", GAUGE,
           ONE, lambda r: r["fleet"]["users_with_integrations"]),
    Metric("syncctl_users_reconnect_required", "Users who must reconnect their Google account.",
           GAUGE, ONE, lambda r: len(r["token_health"]["reconnect_required"])),
    Metric("syncctl_mass_delete_held_pairs", "Pairs held by the mass-delete guard.", GAUGE,
           ONE, lambda r: len(r["mass_delete_holds"])),
    Metric("syncctl_quota_budget_per_minute", "Requests a minute an API may be sent.", GAUGE,
           API, lambda f: f["budget_per_minute"]),
    Metric("syncctl_quota_used_last_minute", "Requests granted in the sliding minute.", GAUGE,
           API, lambda f: f["used_in_window"]),
    Metric("syncctl_integrations_enabled", "Enabled (user, integration) pairs.", GAUGE,
           PER, lambda f: f["enabled"], "fleet.integrations"),
    Metric("syncctl_integrations_active", "Enabled pairs whose token is not revoked.", GAUGE,
           PER, lambda f: f["active"], "fleet.integrations"),
    Metric("syncctl_token_health_pairs", "Pairs by token health status.", GAUGE,
           (*PER, "status"), lambda f: f, "token_health"),
    Metric("syncctl_circuit_breakers", "Pairs by circuit breaker state.", GAUGE,
           (*PER, "state"), lambda f: f, "breakers"),
    Metric("syncctl_fleet_breaker_open", "1 when the Google API's fleet breaker is open.", GAUGE,
           ("api",), lambda f: int(f["state"] != "closed"), "breakers.fleet", "by_api"),
    Metric("syncctl_fleet_breaker_window_attempts", "Attempts against the API in the fleet"
           " breaker's current window.", GAUGE,
           ("api",), lambda f: f["attempts"], "breakers.fleet", "by_api"),
    Metric("syncctl_fleet_breaker_window_transient_failures", "Transient failures at the API"
           " in the fleet breaker's current window.", GAUGE,
           ("api",), lambda f: f["transient_failures"], "breakers.fleet", "by_api"),
    Metric("syncctl_window_sync_attempts", "Attempts in the window by result.", GAUGE,
           (*PER, "result"), lambda f: {r: f[r] for r in ("success", "failure", "skipped")},
           "syncs"),
    Metric("syncctl_window_sync_skips", "Skipped attempts in the window by reason.", GAUGE,
           (*PER, "reason"), lambda f: f["skipped_by_reason"], "syncs"),
    Metric("syncctl_window_sync_failures", "Failed attempts in the window by error class.", GAUGE,
           (*PER, "error_class"), lambda f: f["failures_by_class"], "syncs"),
    Metric("syncctl_window_sync_success_ratio", "success / (success + failure) in the window.",
           GAUGE, PER, lambda f: _ratio(f["success"], f["success"] + f["failure"]), "syncs"),
    Metric("syncctl_window_full_resyncs", "Full resyncs forced by expired sync tokens.", GAUGE,
           PER, lambda f: f["full_resyncs"], "syncs"),
    Metric("syncctl_window_api_calls_made", "Google API requests sent in the window.", GAUGE,
           PER, lambda f: f["made"], "api_calls"),
    Metric("syncctl_window_api_calls_saved", "Google API requests avoided against naive polling"
           " (every pair at its default interval), by mechanism.", GAUGE,
           (*PER, "mechanism"), lambda f: f["saved_by"], "api_calls"),
    Metric("syncctl_window_api_calls_saved_ratio", "saved / (made + saved) in the window.", GAUGE,
           PER, lambda f: _ratio(f["saved"], f["made"] + f["saved"]), "api_calls"),
    Metric("syncctl_staleness_p50_seconds", "Median time since a pair's last successful sync.",
           GAUGE, PER, lambda f: f["p50_seconds"], "staleness"),
    Metric("syncctl_staleness_p95_seconds", "95th percentile time since a pair's last success.",
           GAUGE, PER, lambda f: f["p95_seconds"], "staleness"),
    Metric("syncctl_staleness_max_seconds", "Longest time since a pair's last successful sync.",
           GAUGE, PER, lambda f: f["max_seconds"], "staleness"),
    Metric("syncctl_staleness_overdue_pairs", "Pairs staler than their current interval.", GAUGE,
           PER, lambda f: f["overdue"], "staleness"),
    Metric("syncctl_staleness_never_synced_pairs", "Enabled pairs without a successful sync.",
           GAUGE, PER, lambda f: f["never_synced"], "staleness"),
    Metric("syncctl_expected_interval_seconds", "Median current sync interval of the pairs.",
           GAUGE, PER, lambda f: f["expected_interval_seconds"], "staleness"),
    Metric("syncctl_next_run_due_pairs", "Pairs due now.", GAUGE,
           PER, lambda f: f["due"], "next_run"),
    Metric("syncctl_next_run_expected_api_calls", "Requests the next run-due is expected to send.",
           GAUGE, PER, lambda f: f["expected_api_calls"], "next_run"),
)  # fmt: skip


def samples(metric: Metric, report: dict) -> Samples:
    """The metric's (labels, value) pairs from the report, a None value included."""
    if not metric.labels:
        return [({}, metric.value(report))]
    if metric.labels == API and metric.block is None:  # the quota budget's per-API rows
        return [({"api": api}, metric.value(f)) for api, f in report["quota"]["apis"].items()]
    block: Any = report
    for key in (metric.block or "").split("."):
        block = block[key]
    if metric.per == "by_api":  # a list of per-API rows
        return [({metric.labels[0]: f["api"]}, metric.value(f)) for f in block]
    per = block["by_integration"].items()
    if len(metric.labels) == 1:
        return [({metric.labels[0]: name}, metric.value(f)) for name, f in per]
    outer, inner = metric.labels
    return [({outer: name, inner: key}, n) for name, f in per for key, n in metric.value(f).items()]


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def family(metric: Metric, report: dict, base: dict[str, str]) -> list[str]:
    """The family's lines in the text format; none when it has no sample with a value."""
    body = []
    for labels, value in samples(metric, report):
        if value is None:
            continue
        merged = {**base, **labels}
        text = ",".join(f'{k}="{_label_value(str(v))}"' for k, v in merged.items())
        body.append(f"{metric.name}{{{text}}} {value!r}" if text else f"{metric.name} {value!r}")
    if not body:
        return []
    return [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.type}", *body]


def render_prometheus(report: dict) -> str:
    """The report's figures as Prometheus text exposition, all gauges (windowed, not counters).

    Per-user lists (reconnect, open breakers, stalest pairs) stay out to bound cardinality;
    with `--user`, every series carries a `user` label.
    """
    base = {"user": report["user_id"]} if report["user_id"] else {}
    return "\n".join(line for m in METRICS for line in family(m, report, base)) + "\n"
