"""The report's tables in reading order, as both the terminal and the HTML page show them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from syncctl.clock import from_iso
from syncctl.report_render.cells import human_duration, percent, short_time

MECHANISMS = ("token_health", "circuit_breaker", "adaptive_schedule", "webhook")
TOKEN_STATES = ("valid", "expired", "revoked", "unknown")
BREAKER_STATES = ("closed", "open", "half_open")
LIST_LIMIT = 20


@dataclass(frozen=True)
class Section:
    """One table of the report, as both the terminal and the HTML page show it."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[Any]]
    caption: str | None = None
    empty: str = "none"


def _split_rows(block: dict, cells: Callable[[dict], list[Any]]) -> list[list[Any]]:
    """One row per integration, then `all` from the block's total."""
    rows = [[name, *cells(figures)] for name, figures in block["by_integration"].items()]
    return [*rows, ["all", *cells(block["total"])]]


def _limited(items: list[dict], limit: int | None) -> tuple[list[dict], str | None]:
    if limit is None or len(items) <= limit:
        return items, None
    return items[:limit], f"and {len(items) - limit} more (see --json)"


def _ago(report: dict, stamp: str | None) -> str | None:
    if stamp is None:
        return None
    age = (from_iso(report["generated_at"]) - from_iso(stamp)).total_seconds()
    return f"{short_time(stamp)} ({human_duration(age)} ago)"


def headline(report: dict) -> str:
    """`syncctl report, all users, 2026-03-03 12:00 to 2026-03-10 12:00 UTC (7d)`."""
    scope = f"user {report['user_id']}" if report["user_id"] else "all users"
    window = report["window"]
    return (
        f"syncctl report, {scope}, {short_time(window['since'])} to"
        f" {short_time(window['until'])} UTC ({human_duration(window['seconds'])})"
    )


def sections(report: dict, *, limit: int | None = LIST_LIMIT) -> list[Section]:
    """The report's tables in reading order; lists are cut at `limit` rows (None: all)."""
    found = [
        _fleet_section(report),
        _breaker_section(report),
        _reconnect_section(report, limit),
        _open_breaker_section(report, limit),
        fleet_breaker_section(report["breakers"]["fleet"]),
        *_sync_sections(report),
        _api_section(report),
        *_staleness_sections(report),
        _next_run_section(report),
        _holds_section(report, limit),
        _quota_section(report),
    ]
    if report["user"] is not None:
        found += _user_sections(report["user"], limit)
    return found


def _holds_section(report: dict, limit: int | None) -> Section:
    held, more = _limited(report["mass_delete_holds"], limit)
    hint = (
        "apply: syncctl sync --user U --integration I --allow-mass-delete;"
        " re-fetch: syncctl sync --user U --integration I --full"
    )
    return Section(
        "Held mass deletes",
        ["user", "integration", "mirror", "deleting", "of", "held"],
        [
            [
                h["user_id"],
                h["integration"],
                h["mirror"],
                h["deleting"],
                h["mirrored"],
                short_time(h["held_at"]),
            ]
            for h in held
        ],
        caption=more or (hint if held else None),
        empty="no sync is held",
    )


def _quota_section(report: dict) -> Section:
    return Section(
        "Quota budget",
        ["api", "budget/min", "used, last minute", "share", "peak minute, last hour"],
        [
            [
                api,
                f["budget_per_minute"],
                f["used_in_window"],
                percent(f["used_percent"]),
                f["peak_minute_last_hour"],
            ]
            for api, f in report["quota"]["apis"].items()
        ],
    )


def _fleet_section(report: dict) -> Section:
    fleet, tokens = report["fleet"], report["token_health"]
    pairs = fleet["integrations"]
    # By name: a stored integration this version does not know may be in one block only.
    token_blocks = {**tokens["by_integration"], "all": tokens["total"]}
    rows = [
        [
            name,
            f["enabled"],
            f["active"],
            *(token_blocks.get(name, {}).get(s, 0) for s in TOKEN_STATES),
        ]
        for name, f in [*pairs["by_integration"].items(), ("all", pairs["total"])]
    ]
    return Section(
        "Integrations and token health",
        ["integration", "enabled", "active", *TOKEN_STATES],
        rows,
        caption=f"{fleet['users']} users, {fleet['users_with_integrations']} with"
        " integrations; active = enabled and token not revoked",
    )


def _breaker_section(report: dict) -> Section:
    return Section(
        "Circuit breakers",
        ["integration", "closed", "open", "half-open"],
        _split_rows(report["breakers"], lambda f: [f.get(s, 0) for s in BREAKER_STATES]),
    )


def _reconnect_section(report: dict, limit: int | None) -> Section:
    users, more = _limited(report["token_health"]["reconnect_required"], limit)
    return Section(
        "Users who must reconnect",
        ["user", "revoked", "since"],
        [
            [u["user_id"], ",".join(u["integrations"]) or None, _ago(report, u["since"])]
            for u in users
        ],
        caption=more,
        empty="no user must reconnect",
    )


def _open_breaker_section(report: dict, limit: int | None) -> Section:
    opened, more = _limited(report["breakers"]["open"], limit)
    return Section(
        "Open circuit breakers",
        ["user", "integration", "failures", "reason", "opened", "retry at"],
        [
            [
                b["user_id"],
                b["integration"],
                b["failure_count"],
                b["reason"],
                short_time(b["opened_at"]),
                short_time(b["next_retry_at"]),
            ]
            for b in opened
        ],
        caption=more,
        empty="no breaker is open",
    )


def fleet_breaker_section(fleet: list[dict]) -> Section:
    """The fleet breaker of each Google API (the report's and `breaker list`'s table)."""
    return Section(
        "Fleet breakers (per Google API)",
        ["API", "state", "attempts", "transient failures", "opened", "last probe", "reason"],
        [
            [
                f["name"],
                f["state"],
                f["attempts"],
                f["transient_failures"],
                short_time(f["opened_at"]),
                short_time(f["last_probe_at"]),
                f["last_failure_reason"],
            ]
            for f in fleet
        ],
        caption="attempts and failures of the current window; open: run-due probes it once a"
        " run and starts nothing else against it (`syncctl breaker reset --fleet` closes it)",
    )


def _sync_sections(report: dict) -> list[Section]:
    window = human_duration(report["window"]["seconds"])
    syncs = report["syncs"]
    classes = [c for c, n in syncs["total"]["failures_by_class"].items() if n]
    return [
        Section(
            f"Syncs, last {window}",
            ["integration", "attempts", "success", "failure", "skipped", "success rate",
             "full resyncs"],
            _split_rows(
                syncs,
                lambda f: [
                    f["attempts"], f["success"], f["failure"], f["skipped"],
                    percent(f["success_rate_percent"]), f["full_resyncs"],
                ],
            ),
            caption="success rate = success / (success + failure); full resyncs: forced by"
            " an expired sync token",
        ),
        Section(
            f"Skips and failures, last {window}",
            ["integration", "skip: invalid token", "skip: circuit open",
             *(f"fail: {c}" for c in classes)],
            _split_rows(
                syncs,
                lambda f: [
                    f["skipped_by_reason"].get("invalid_token", 0),
                    f["skipped_by_reason"].get("circuit_open", 0),
                    *(f["failures_by_class"].get(c, 0) for c in classes),
                ],
            ),
        ),
    ]  # fmt: skip


def _api_section(report: dict) -> Section:
    window = human_duration(report["window"]["seconds"])
    return Section(
        f"API calls, last {window}",
        ["integration", "made", "saved", "token health", "circuit breaker",
         "adaptive schedule", "webhook", "saved share"],
        _split_rows(
            report["api_calls"],
            lambda f: [
                f["made"], f["saved"], *(f["saved_by"].get(m, 0) for m in MECHANISMS),
                percent(f["saved_share_percent"]),
            ],
        ),
        caption=f"saved: against {report['api_calls']['counterfactual']};"
        " saved share = saved / (made + saved)",
    )  # fmt: skip


def _staleness_sections(report: dict) -> list[Section]:
    stale = report["staleness"]["by_integration"]
    return [
        Section(
            "Staleness: time since the last successful sync",
            ["integration", "pairs", "median", "p95", "max", "interval", "overdue",
             "never synced"],
            [
                [
                    name, f["pairs"], human_duration(f["p50_seconds"]),
                    human_duration(f["p95_seconds"]), human_duration(f["max_seconds"]),
                    human_duration(f["expected_interval_seconds"]), f["overdue"],
                    f["never_synced"],
                ]
                for name, f in stale.items()
            ],
            caption="interval: the pairs' median current interval; overdue: staler than"
            " the pair's own interval",
        ),
        Section(
            "Stalest pairs",
            ["integration", "user", "last success", "staleness", "interval"],
            [
                [
                    name, w["user_id"], short_time(w["last_success_at"]) or "never",
                    human_duration(w["staleness_seconds"]), human_duration(w["interval_seconds"]),
                ]
                for name, f in stale.items()
                for w in f["worst"]
            ],
            empty="no integration is enabled",
        ),
    ]  # fmt: skip


def _next_run_section(report: dict) -> Section:
    return Section(
        "Next run-due",
        ["integration", "due now", "will run", "skip: revoked", "skip: breaker open",
         "expected API calls"],
        _split_rows(
            report["next_run"],
            lambda f: [f["due"], f["will_run"], f["skip_revoked"], f["skip_breaker_open"],
                       f["expected_api_calls"]],
        ),
        caption="expected calls: each pair's mean over its recent successful syncs",
    )  # fmt: skip


USER_FIELDS: Sequence[tuple[str, Callable[[dict], Any]]] = (
    ("token", lambda p: p["token_status"]),
    ("token checked", lambda p: short_time(p["token_last_checked"])),
    ("token error", lambda p: p["token_error"]),
    ("breaker", lambda p: p["breaker_state"]),
    ("breaker failures", lambda p: p["breaker_failure_count"]),
    ("breaker reason", lambda p: p["breaker_reason"]),
    ("breaker retry at", lambda p: short_time(p["breaker_next_retry_at"])),
    ("interval", lambda p: human_duration(p["current_frequency_seconds"])),
    ("default interval", lambda p: human_duration(p["default_frequency_seconds"])),
    ("no-change streak", lambda p: p["consecutive_no_changes"]),
    ("last sync", lambda p: short_time(p["last_sync_at"])),
    ("next sync", lambda p: short_time(p["next_sync_at"])),
    ("last success", lambda p: short_time(p["last_success_at"]) or "never"),
    ("staleness", lambda p: human_duration(p["staleness_seconds"])),
)


def _user_sections(user: dict, limit: int | None) -> list[Section]:
    history, more = _limited(user["history"], None if limit is None else limit * 5)
    if more is None and user["history_truncated"]:
        more = "older attempts not shown"
    pairs = user["integrations"]
    attempts = [
        [
            short_time(h["created_at"]),
            h["integration"],
            h["trigger"],
            h["result"],
            h["skip_reason"] or h["error_class"] or ("full resync" if h["full_resync"] else None),
            h["items_processed"],
            h["api_calls_made"],
            h["api_calls_saved"],
            h["saved_by"],
        ]
        for h in history
    ]
    return [
        Section(
            f"User {user['id']}" + (f" <{user['email']}>" if user["email"] else ""),
            ["", *(p["integration"] for p in pairs)],
            [[name, *(value(p) for p in pairs)] for name, value in USER_FIELDS] if pairs else [],
            empty="no integration is enabled",
        ),
        Section(
            "History, newest first",
            ["time", "integration", "trigger", "result", "why", "items", "calls", "saved",
             "saved by"],
            attempts,
            caption=more,
            empty="no attempt in the window",
        ),
    ]  # fmt: skip
