"""The only printer: data to stdout (rich tables or one JSON document), diagnostics to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

stdout = Console(soft_wrap=False)
stderr = Console(stderr=True, soft_wrap=True)


def print_json(document: Any) -> None:
    """Print one JSON document on stdout and nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
) -> None:
    """Print a rich table on stdout; None cells show as a dash."""
    table = Table(title=title, caption=caption, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    stdout.print(table)


def say(message: str) -> None:
    """A line for the operator on stdout (human mode only)."""
    stdout.print(message, highlight=False, markup=False)


def note(message: str) -> None:
    """A diagnostic or progress line on stderr."""
    stderr.print(message, highlight=False, markup=False)


def error(message: str) -> None:
    """One clear error line on stderr."""
    stderr.print(f"syncctl: error: {message}", highlight=False, markup=False, soft_wrap=True)
