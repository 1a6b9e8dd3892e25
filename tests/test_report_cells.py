"""The report's cell formatting, shared by the terminal printer and the HTML page."""

from __future__ import annotations

import pytest

from syncctl.cli import _output
from syncctl.report_render import cells, page


@pytest.mark.parametrize(
    ("text", "figure"),
    [
        ("0", True),
        ("42", True),
        ("-3", True),
        ("97.5%", True),
        ("-12.5%", True),
        ("0.25", True),
        ("-", True),  # a missing value does not make a column of figures text
        ("", False),
        ("--3", False),
        ("1.2.3", False),
        ("3d 4h", False),
        ("u01", False),
        ("-%", False),
        ("2026-03-10 11:00", False),
    ],
)
def test_is_figure(text, figure):
    assert cells.is_figure(text) is figure


def test_terminal_and_page_align_by_the_same_rule():
    assert _output.is_figure is cells.is_figure is page.is_figure


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, None), (0, "0s"), (12, "12s"), (60, "1m"), (3725, "1h 2m"), (93600, "1d 2h"),
     (-90, "-1m 30s")],
)  # fmt: skip
def test_human_duration_shows_the_two_largest_units(seconds, text):
    assert cells.human_duration(seconds) == text
