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


def print_text(text: str) -> None:
    """Print preformatted machine-readable text (e.g. Prometheus exposition) on stdout, as is."""
    sys.stdout.write(text)
    sys.stdout.flush()


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
        numeric = bool(cells) and all(_is_figure(row[index]) for row in cells)
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


def _is_figure(text: str) -> bool:
    return text == "-" or text.rstrip("%").replace(".", "", 1).isdigit()
