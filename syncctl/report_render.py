"""Renderings of a report dict from `syncctl.report.build_report`: the table sections shared by
the terminal and the HTML page, Prometheus text exposition, and a self-contained HTML page."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from syncctl.clock import from_iso

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


def human_duration(seconds: float | None) -> str | None:
    """The two largest units of a duration: `3d 4h`, `2h 5m`, `45m`, `12s`."""
    if seconds is None:
        return None
    seconds = int(seconds)
    if seconds < 0:
        return f"-{human_duration(-seconds)}"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2 or (parts and seconds == 0):
            break
    return " ".join(parts)


def short_time(stamp: str | None) -> str | None:
    """`2026-03-10 11:00` from a stored UTC ISO timestamp."""
    return None if stamp is None else f"{stamp[:10]} {stamp[11:16]}"


def is_figure(text: str) -> bool:
    """Whether a rendered cell is a number, a percentage or a dash (aligned right)."""
    return text == "-" or text.rstrip("%").replace(".", "", 1).isdigit()


def percent(value: float | None) -> str | None:
    """`97.5%`, or None when the figure is undefined."""
    return None if value is None else f"{value:g}%"


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
        *_sync_sections(report),
        _api_section(report),
        *_staleness_sections(report),
        _next_run_section(report),
    ]
    if report["user"] is not None:
        found += _user_sections(report["user"], limit)
    return found


def _fleet_section(report: dict) -> Section:
    fleet, tokens = report["fleet"], report["token_health"]
    pairs = fleet["integrations"]
    rows = [
        [name, f["enabled"], f["active"], *(t.get(s, 0) for s in TOKEN_STATES)]
        for (name, f), t in zip(
            [*pairs["by_integration"].items(), ("all", pairs["total"])],
            [*tokens["by_integration"].values(), tokens["total"]],
            strict=True,
        )
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
        caption="saved share = saved / (made + saved)",
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


# --- Prometheus text exposition -------------------------------------------------------------


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Exposition:
    """Gauge families in the text format; a family with no sample is left out entirely."""

    def __init__(self, base_labels: dict[str, str]) -> None:
        self.base = base_labels
        self.lines: list[str] = []

    def gauge(
        self, name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float | None]]
    ) -> None:
        body = []
        for labels, value in samples:
            if value is None:
                continue
            merged = {**self.base, **labels}
            text = ",".join(f'{k}="{_label_value(str(v))}"' for k, v in merged.items())
            body.append(f"{name}{{{text}}} {value!r}" if text else f"{name} {value!r}")
        if body:
            self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *body]


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _per(block: dict, value: Callable[[dict], float | None]) -> list:
    return [({"integration": name}, value(f)) for name, f in block["by_integration"].items()]


def _per_key(block: dict, label: str, values: Callable[[dict], dict]) -> list:
    return [
        ({"integration": name, label: key}, n)
        for name, f in block["by_integration"].items()
        for key, n in values(f).items()
    ]


def render_prometheus(report: dict) -> str:
    """The report's figures as Prometheus text exposition, all gauges (windowed, not counters).

    Per-user lists (reconnect, open breakers, stalest pairs) stay out to bound cardinality;
    with `--user`, every series carries a `user` label.
    """
    out = _Exposition({"user": report["user_id"]} if report["user_id"] else {})
    fleet, syncs, calls = report["fleet"], report["syncs"], report["api_calls"]
    stale, nxt = report["staleness"], report["next_run"]
    g = out.gauge
    g(
        "syncctl_report_generated_timestamp_seconds",
        "When the report was computed.",
        [({}, from_iso(report["generated_at"]).timestamp())],
    )
    g(
        "syncctl_report_window_seconds",
        "Window of the syncctl_window_* gauges.",
        [({}, report["window"]["seconds"])],
    )
    g("syncctl_users", "Users known to syncctl.", [({}, fleet["users"])])
    g(
        "syncctl_users_with_integrations",
        "Users with at least one integration.",
        [({}, fleet["users_with_integrations"])],
    )
    g(
        "syncctl_users_reconnect_required",
        "Users who must reconnect their Google account.",
        [({}, len(report["token_health"]["reconnect_required"]))],
    )
    g(
        "syncctl_integrations_enabled",
        "Enabled (user, integration) pairs.",
        _per(fleet["integrations"], lambda f: f["enabled"]),
    )
    g(
        "syncctl_integrations_active",
        "Enabled pairs whose token is not revoked.",
        _per(fleet["integrations"], lambda f: f["active"]),
    )
    g(
        "syncctl_token_health_pairs",
        "Pairs by token health status.",
        _per_key(report["token_health"], "status", lambda f: f),
    )
    g(
        "syncctl_circuit_breakers",
        "Pairs by circuit breaker state.",
        _per_key(report["breakers"], "state", lambda f: f),
    )
    g(
        "syncctl_window_sync_attempts",
        "Attempts in the window by result.",
        _per_key(syncs, "result", lambda f: {r: f[r] for r in ("success", "failure", "skipped")}),
    )
    g(
        "syncctl_window_sync_skips",
        "Skipped attempts in the window by reason.",
        _per_key(syncs, "reason", lambda f: f["skipped_by_reason"]),
    )
    g(
        "syncctl_window_sync_failures",
        "Failed attempts in the window by error class.",
        _per_key(syncs, "error_class", lambda f: f["failures_by_class"]),
    )
    g(
        "syncctl_window_sync_success_ratio",
        "success / (success + failure) in the window.",
        _per(syncs, lambda f: _ratio(f["success"], f["success"] + f["failure"])),
    )
    g(
        "syncctl_window_full_resyncs",
        "Full resyncs forced by expired sync tokens.",
        _per(syncs, lambda f: f["full_resyncs"]),
    )
    g(
        "syncctl_window_api_calls_made",
        "Google API requests sent in the window.",
        _per(calls, lambda f: f["made"]),
    )
    g(
        "syncctl_window_api_calls_saved",
        "Google API requests avoided, by mechanism.",
        _per_key(calls, "mechanism", lambda f: f["saved_by"]),
    )
    g(
        "syncctl_window_api_calls_saved_ratio",
        "saved / (made + saved) in the window.",
        _per(calls, lambda f: _ratio(f["saved"], f["made"] + f["saved"])),
    )
    g(
        "syncctl_staleness_p50_seconds",
        "Median time since a pair's last successful sync.",
        _per(stale, lambda f: f["p50_seconds"]),
    )
    g(
        "syncctl_staleness_p95_seconds",
        "95th percentile time since a pair's last success.",
        _per(stale, lambda f: f["p95_seconds"]),
    )
    g(
        "syncctl_staleness_max_seconds",
        "Longest time since a pair's last successful sync.",
        _per(stale, lambda f: f["max_seconds"]),
    )
    g(
        "syncctl_staleness_overdue_pairs",
        "Pairs staler than their current interval.",
        _per(stale, lambda f: f["overdue"]),
    )
    g(
        "syncctl_staleness_never_synced_pairs",
        "Enabled pairs without a successful sync.",
        _per(stale, lambda f: f["never_synced"]),
    )
    g(
        "syncctl_expected_interval_seconds",
        "Median current sync interval of the pairs.",
        _per(stale, lambda f: f["expected_interval_seconds"]),
    )
    g("syncctl_next_run_due_pairs", "Pairs due now.", _per(nxt, lambda f: f["due"]))
    g(
        "syncctl_next_run_expected_api_calls",
        "Requests the next run-due is expected to send.",
        _per(nxt, lambda f: f["expected_api_calls"]),
    )
    return "\n".join(out.lines) + "\n"  # fmt: skip


# --- HTML -----------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;
background:#fafbfc}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:24px 0 6px}
.meta{color:#5a6270;margin:0 0 16px}
table{border-collapse:collapse;background:#fff;margin:0 0 4px}
th,td{border:1px solid #d8dde5;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#eef1f5}.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:bottom;text-align:left;color:#5a6270;font-size:12px;padding-top:2px}
.empty{color:#5a6270;font-style:italic}
.charts{display:flex;flex-wrap:wrap;gap:24px}
figure{margin:0;background:#fff;border:1px solid #d8dde5;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
svg text{font:11px system-ui,sans-serif;fill:#3a4250}
.success{fill:#2e9d5b}.failure{fill:#d1443c}.skipped{fill:#a3acb9}
.made{fill:#3b6fd4}.saved{fill:#f0a830}
"""

SERIES_SYNCS = (("success", "success"), ("failure", "failure"), ("skipped", "skipped"))
SERIES_CALLS = (("api_calls_made", "made"), ("api_calls_saved", "saved"))


def _axis(value: float) -> tuple[float, int]:
    """A round tick step and the number of ticks that covers value (about four ticks)."""
    if value <= 0:
        return 1, 4
    target = value / 4
    magnitude = 10 ** math.floor(math.log10(target))
    step = next(s * magnitude for s in (1, 2, 2.5, 5, 10) if target <= s * magnitude)
    return step, max(1, math.ceil(value / step))


def bar_chart(
    chart_id: str,
    title: str,
    days: list[dict],
    series: Sequence[tuple[str, str]],
    *,
    stacked: bool,
) -> str:
    """An inline SVG bar chart of daily figures, stacked or grouped, one <rect> per value."""
    width, height, left, bottom, top = 560, 220, 48, 36, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    heights = [sum(d[k] for k, _ in series) if stacked else max(d[k] for k, _ in series)
               for d in days]  # fmt: skip
    step, ticks = _axis(max(heights, default=0))
    ymax = step * ticks
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7 / (1 if stacked else len(series)), 1)
    parts = [
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{html.escape(title)}">'
    ]
    for i in range(ticks + 1):
        y = top + plot_h - plot_h * i / ticks
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ed"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{step * i:g}</text>'
        )
    label_every = max(1, math.ceil(len(days) / 10))
    for index, day in enumerate(days):
        x0 = left + index * slot + slot * 0.15
        base = top + plot_h
        for position, (key, css) in enumerate(series):
            h = plot_h * day[key] / ymax
            x = x0 if stacked else x0 + position * bar_w
            parts.append(
                f'<rect class="bar {css}" data-date="{day["date"]}" data-series="{key}"'
                f' data-value="{day[key]}" x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}"'
                f' height="{h:.1f}"><title>{day["date"]} {css}: {day[key]}</title></rect>'
            )
            if stacked:
                base -= h
        if index % label_every == 0:
            parts.append(
                f'<text x="{x0 + slot * 0.35:.1f}" y="{height - bottom + 14}"'
                f' text-anchor="middle">{day["date"][5:]}</text>'
            )
    for position, (_, css) in enumerate(series):
        x = left + position * 80
        parts.append(
            f'<rect class="{css}" x="{x}" y="{height - 14}" width="10" height="10"/>'
            f'<text x="{x + 14}" y="{height - 5}">{css}</text>'
        )
    parts.append("</svg>")
    return f"<figure><figcaption>{html.escape(title)}</figcaption>{''.join(parts)}</figure>"


def _html_table(section: Section) -> str:
    head = f"<h2>{html.escape(section.title)}</h2>"
    if not section.rows:
        return f'{head}<p class="empty">{html.escape(section.empty)}</p>'
    cells = [["-" if v is None else str(v) for v in row] for row in section.rows]
    numeric = [all(is_figure(row[i]) for row in cells) for i in range(len(section.columns))]
    kind = ['<td class="num">' if n else "<td>" for n in numeric]
    columns = "".join(
        f"<th{' class=num' if n else ''}>{html.escape(c)}</th>"
        for c, n in zip(section.columns, numeric, strict=True)
    )
    body = "".join(
        "<tr>" + "".join(f"{kind[i]}{html.escape(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in cells
    )
    caption = f"<caption>{html.escape(section.caption)}</caption>" if section.caption else ""
    return f"{head}<table>{caption}<thead><tr>{columns}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict) -> str:
    """A static, self-contained page (no script, no network): charts as inline SVG, tables."""
    window = human_duration(report["window"]["seconds"])
    charts = bar_chart(
        "chart-syncs", f"Syncs by result per day, last {window}", report["daily"],
        SERIES_SYNCS, stacked=True,
    ) + bar_chart(
        "chart-calls", f"API calls made vs saved per day, last {window}", report["daily"],
        SERIES_CALLS, stacked=False,
    )  # fmt: skip
    tables = "".join(_html_table(s) for s in sections(report, limit=None))
    meta = headline(report).removeprefix("syncctl report, ")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
        " style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>syncctl report {html.escape(short_time(report['generated_at']) or '')}</title>"
        f"<style>{CSS}</style></head><body><h1>syncctl report</h1>"
        f'<p class="meta">{html.escape(meta)}</p><div class="charts">{charts}</div>'
        f"{tables}</body></html>\n"
    )
