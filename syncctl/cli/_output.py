"""The only printer: data to stdout (rich tables or one JSON document), diagnostics to stderr."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from syncctl.model import Result, SkipReason, shown_integration
from syncctl.report_render.cells import is_figure


def stdout_closed() -> None:
    """The reader of stdout went away (`syncctl report | head -1`): the rest of the output is
    dropped, with no error line, and the command ends with its own exit status (see Python's
    note on SIGPIPE: https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class _Stdout(Console):
    """Rich's console on stdout, which would exit 1 when the reader goes away; this one drops
    the rest quietly instead."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stdout_closed()


stdout = _Stdout(soft_wrap=False)
stderr = Console(stderr=True, soft_wrap=True)


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()


def print_json(document: Any) -> None:
    """Print one JSON document on stdout and nothing else."""
    _write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
) -> None:
    """Print a rich table on stdout (cells as `shown_cell` spells them)."""
    table = Table(title=title, caption=caption, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(shown_cell(cell) for cell in row))
    stdout.print(table)


_STORED_UTC = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)\+00:00")


def shown_cell(cell: Any) -> str:
    """A table cell as text: None as a dash, a stored UTC time as `2026-12-02 19:36:25Z` (one
    that fits an 80-column table without folding; --json keeps the stored ISO string)."""
    if cell is None:
        return "-"
    text = str(cell)
    stamp = _STORED_UTC.fullmatch(text)
    return f"{stamp[1]} {stamp[2]}Z" if stamp else text


def with_shown_integrations(rows: Iterable[dict]) -> list[dict]:
    """Rows read from a table, with `integration_type` spelled as on the command line."""
    return [
        {**row, "integration_type": shown_integration(row["integration_type"])}
        if "integration_type" in row
        else row
        for row in rows
    ]


def say(message: str) -> None:
    """A line for the operator on stdout (human mode only)."""
    stdout.print(message, highlight=False, markup=False)


def note(message: str) -> None:
    """A diagnostic or progress line on stderr."""
    stderr.print(message, highlight=False, markup=False)


def error(message: str) -> None:
    """One clear error line on stderr (whatever newlines the message held)."""
    line = " ".join(str(message).split())
    stderr.print(f"syncctl: error: {line}", highlight=False, markup=False, soft_wrap=True)


def print_text(text: str) -> None:
    """Print preformatted machine-readable text (e.g. Prometheus exposition) on stdout, as is."""
    _write(text)


def attempt_row(record: Any) -> dict:
    """The plain dict of one attempt, shared by the table and --json."""
    return {
        "user_id": record.user_id,
        "integration_type": shown_integration(record.integration_type),
        "trigger": str(record.trigger),
        "result": str(record.result),
        "skip_reason": record.skip_reason and str(record.skip_reason),
        "sync_type": record.sync_type and str(record.sync_type),
        "items_processed": record.items_processed,
        "added": record.items_added,
        "updated": record.items_updated,
        "deleted": record.items_deleted,
        "api_calls_made": record.api_calls_made,
        "api_calls_saved": record.api_calls_saved,
        "saved_by": record.saved_by and str(record.saved_by),
        "duration_ms": record.duration_ms,
        "error": record.error_message,
    }


def render_attempts(records: Sequence[Any], *, json_output: bool, title: str) -> None:
    """Print attempts as a table (with totals) or as one JSON document."""
    rows = [attempt_row(r) for r in records]
    totals = {
        "attempts": len(rows),
        "success": sum(r["result"] == "success" for r in rows),
        "failure": sum(r["result"] == "failure" for r in rows),
        "skipped": sum(r["result"] == "skipped" for r in rows),
        "api_calls_made": sum(r["api_calls_made"] for r in rows),
        "api_calls_saved": sum(r["api_calls_saved"] for r in rows),
    }
    if json_output:
        print_json({"attempts": rows, "totals": totals})
        return
    for row in rows:
        if row["result"] == "failure":
            note(f"failed: {row['user_id']} {row['integration_type']}: {row['error']}")
    print_table(
        title,
        ["user", "integration", "result", "why", "type", "items", "+/~/-", "calls", "saved"],
        [
            (
                r["user_id"],
                r["integration_type"],
                r["result"],
                r["skip_reason"] or r["error"],
                r["sync_type"],
                r["items_processed"],
                f"{r['added']}/{r['updated']}/{r['deleted']}",
                r["api_calls_made"],
                f"{r['api_calls_saved']} ({r['saved_by']})" if r["saved_by"] else 0,
            )
            for r in rows
        ],
        caption=", ".join(f"{k}: {v}" for k, v in totals.items()),
    )


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (SPEC 1 "Under cron": not one means cron or a pipe)."""
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def newly_revoked(record: Any) -> bool:
    """Whether this attempt found the grant revoked (Google said so now), rather than being
    skipped because a revocation found earlier is stored."""
    return record.skip_reason == SkipReason.INVALID_TOKEN and record.error_class is not None


def run_due_problems(records: Sequence[Any]) -> list[str]:
    """What newly went wrong in a run, for stderr under cron: nothing when every attempt
    succeeded or was skipped for a cause already reported; otherwise one summary line, then a
    line per failed pair, per grant found revoked and per sync held in this run."""
    failed = [r for r in records if r.result == Result.FAILURE]
    # One line a grant: the user's other pairs are then skipped on the stored verdict.
    revoked = list({r.user_id: r for r in records if newly_revoked(r)}.values())
    # A held pair is not due again, so each hold is reported once, by the run that found it.
    held = [r for r in records if r.skip_reason == SkipReason.MASS_DELETE_HELD]
    if not failed and not revoked and not held:
        return []
    succeeded = sum(r.result == Result.SUCCESS for r in records)
    skipped = sum(r.result == Result.SKIPPED for r in records)
    summary = (
        f"syncctl run-due: {len(records)} attempts, {succeeded} succeeded, {len(failed)} failed,"
        f" {skipped} skipped"
    )
    if revoked:
        summary += f"; {len(revoked)} grant(s) newly revoked"
    if held:
        summary += f"; {len(held)} sync(s) held by the mass-delete guard"
    return [
        summary,
        *(f"failed: {r.user_id} {r.integration_type.cli_name}: {r.error_message}" for r in failed),
        *(
            f"revoked: {r.user_id}: {r.error_message}"
            f" (run `syncctl user add {r.user_id} --credentials FILE`)"
            for r in revoked
        ),
        *(
            f"held: {r.user_id} {r.integration_type.cli_name}: {r.error_message} (run `syncctl"
            f" sync --user {r.user_id} --integration {r.integration_type.cli_name}"
            " --allow-mass-delete` to apply, or `--full` to re-fetch)"
            for r in held
        ),
    ]


def render_run_due(
    records: Sequence[Any] | None,
    *,
    json_output: bool,
    verbose: bool,
    notes: Sequence[str] = (),
) -> None:
    """Print a run-due (None: another run-due held the database): JSON, or the attempt table on
    a terminal or with --verbose; under cron only what newly went wrong, on stderr (nothing at
    all when all is well). `notes` (a refused OAuth client, a fleet breaker that opened) go to
    stderr once each in every mode."""
    shown = json_output or verbose or stdout_is_terminal()
    if records is None:
        # Under cron a long run overlapping the next is routine, not news worth a mail.
        if shown:
            note("another run-due is running on this database; nothing done")
        if json_output:  # scripts reading stdout still get their one document
            print_json({"ran": False, "reason": "another run-due is running"})
        return
    if shown:
        render_attempts(records, json_output=json_output, title="run-due")
        for line in notes:
            note(line)
        return
    for line in [*run_due_problems(records), *notes]:
        note(line)


def render_plan(plans: Sequence[Any], *, json_output: bool) -> None:
    """Print what run-due would do (dry run)."""
    rows = [
        {
            "user_id": p.user_id,
            "integration_type": shown_integration(p.integration),
            "trigger": str(p.trigger),
            "due_since": p.due_since,
            "action": p.action,
            "reason": p.reason,
        }
        for p in plans
    ]
    if json_output:
        print_json({"dry_run": True, "due": rows})
        return
    print_table(
        "run-due --dry-run (nothing changed)",
        ["user", "integration", "due since", "would", "why"],
        [
            (r["user_id"], r["integration_type"], r["due_since"], r["action"], r["reason"])
            for r in rows
        ],
        caption=f"{len(rows)} due",
    )


class AttemptProgress:
    """A progress bar on a terminal; nothing otherwise (cron logs stay quiet)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and stderr.is_terminal
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> AttemptProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, total: int) -> None:
        if not self.enabled or total == 0:
            return
        from rich.progress import Progress

        self._progress = Progress(console=stderr, transient=True)
        self._task = self._progress.add_task("syncing", total=total)
        self._progress.start()

    def advance(self, record: Any) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)


def attempt_progress(*, enabled: bool) -> AttemptProgress:
    """A context-managed progress reporter for run-due."""
    return AttemptProgress(enabled)


def print_figures(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
) -> None:
    """Print a table of figures on stdout: numbers align right, headers break between words
    when the terminal is narrow, None cells show as a dash."""
    cells = [["-" if cell is None else str(cell) for cell in row] for row in rows]
    widest = [max([len(c) for c in column.splitlines()] + [len(r[i]) for r in cells])
              for i, column in enumerate(columns)]  # fmt: skip
    compact = [max([len(w) for w in column.split()] + [len(r[i]) for r in cells])
               for i, column in enumerate(columns)]  # fmt: skip
    # Fixed widths only when the natural ones overflow: rich would split words in headers.
    use_compact = _table_width(widest) > stdout.width >= _table_width(compact)
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for index, column in enumerate(columns):
        numeric = bool(cells) and all(is_figure(row[index]) for row in cells)
        table.add_column(
            column,
            justify="right" if numeric else "left",
            width=compact[index] if use_compact else None,
            overflow="fold",
        )
    for row in cells:
        table.add_row(*row)
    stdout.print(table)


def _table_width(widths: Sequence[int]) -> int:
    return sum(widths) + 3 * len(widths) + 1
