"""The report as a static, self-contained HTML page: inline SVG bar charts of the daily figures,
then the same table sections as the terminal."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from syncctl.report_render.cells import human_duration, is_figure, short_time
from syncctl.report_render.sections import Section, headline, sections

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
