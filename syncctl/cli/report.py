"""`syncctl report`: the operator's dashboard as tables, JSON, Prometheus text or an HTML page."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from syncctl.cli import _output
from syncctl.cli._context import app_state
from syncctl.clock import utcnow
from syncctl.report import build_report, parse_duration
from syncctl.report_render.page import render_html
from syncctl.report_render.prometheus import render_prometheus
from syncctl.report_render.sections import headline, sections
from syncctl.users import BadInput

FORMATS = ("table", "json", "prometheus")


def report_command(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option("--since", help="Window for the sync figures: 30m, 24h, 7d, 2w.")
    ] = "7d",
    user: Annotated[
        str | None, typer.Option("--user", help="Drill into one user's state and history.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (same as --format json).")
    ] = False,
    format: Annotated[
        str, typer.Option("--format", help="table, json or prometheus (text exposition).")
    ] = "table",
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write a self-contained HTML page here (instead of the table; as well as"
            " --json or --format output).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Fleet figures: tokens, breakers, success rates, API calls saved, staleness, next spend.

    Times are UTC. With --html FILE and no --json/--format, only the page is written.

    Example: syncctl report --since 7d --format prometheus > /var/lib/node_exporter/syncctl.prom
    """
    chosen = _choose_format(format, json_output)
    window = parse_duration(since)
    state = app_state(ctx)
    report = build_report(
        state.db, now=utcnow(), since=window, user_id=user, settings=state.settings
    )
    if report["unreadable_values"]:
        _output.note(unreadable_warning(report["unreadable_values"]))
    if html is not None:
        _write_atomically(html, render_html(report))
        _output.note(f"wrote {html}")
        if chosen == "table":
            return
    if chosen == "json":
        _output.print_json(report)
    elif chosen == "prometheus":
        _output.print_text(render_prometheus(report))
    else:
        print_report_tables(report)


def _choose_format(name: str, json_output: bool) -> str:
    if name not in FORMATS:
        raise BadInput(f"unknown format {name!r} (use {', '.join(FORMATS)})")
    if json_output and name not in ("table", "json"):
        raise BadInput(f"--json and --format {name} cannot be combined")
    return "json" if json_output else name


def unreadable_warning(columns: list[str]) -> str:
    """One stderr line naming where the stored times the report could not read are (SPEC 1)."""
    return (
        f"syncctl: warning: stored times that do not read in {', '.join(columns)};"
        " the report shows them as unknown"
    )


def print_report_tables(report: dict) -> None:
    _output.say(headline(report))
    for section in sections(report):
        if section.rows:
            _output.print_figures(
                section.title, section.columns, section.rows, caption=section.caption
            )
        else:
            _output.say(f"{section.title}: {section.empty}")


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a web server never serves half a page."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise BadInput(f"cannot write {path}: {exc.strerror}") from exc
