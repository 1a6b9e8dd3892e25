"""`syncctl report --html`: a self-contained page that a real browser (headless Chromium) renders
with its charts and figures. CI installs Chromium with `apt-get install -y chromium`."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from freezegun import freeze_time
from test_report import NOW, build_scenario, expected_report
from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.report import build_report
from syncctl.report_render.page import render_html
from syncctl.store import open_database

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (install it: apt-get install -y chromium)"
)
SYNC_GREEN = (0x2E, 0x9D, 0x5B)
MADE_BLUE = (0x3B, 0x6F, 0xD4)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, dict]:
    """The page of the scenario over 14 days, written by the command line, and its figures."""
    folder = tmp_path_factory.mktemp("html")
    db = open_database(folder / "report.db")
    build_scenario(db)
    expected = expected_report(db, NOW, timedelta(days=14))
    db.close()
    out = folder / "report.html"
    runner = CliRunner()
    env = {"SYNCCTL_DB": str(folder / "report.db"), "SYNCCTL_CONFIG": str(folder / "none.toml")}
    (folder / "none.toml").write_text("")
    with freeze_time(NOW):
        result = runner.invoke(
            app, ["report", "--since", "14d", "--html", str(out)], env=env, catch_exceptions=False
        )
    assert result.exit_code == 0, result.stderr
    return out, expected


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)


class Dom(HTMLParser):
    """The elements of a dumped DOM: (tag, attributes, text) with the enclosing svg id."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict] = []
        self.svg: str | None = None
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "svg":
            self.svg = attributes.get("id")
        self.elements.append({"tag": tag, "attrs": attributes, "svg": self.svg})
        if tag == "td":
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "svg":
            self.svg = None
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def bars(dom: Dom, chart: str) -> dict[tuple[str, str], int]:
    return {
        (e["attrs"]["data-date"], e["attrs"]["data-series"]): int(e["attrs"]["data-value"])
        for e in dom.elements
        if e["tag"] == "rect" and e["svg"] == chart and "bar" in e["attrs"].get("class", "")
    }


def png_pixels(path: Path) -> set[tuple[int, int, int]]:
    """The distinct RGB colours of an 8-bit RGB/RGBA non-interlaced PNG (Chromium's output)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", None
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    channels = 3 if color == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    colours: set[tuple[int, int, int]] = set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        colours.update((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, channels * 4))
        previous = line
    return colours


def test_page_is_self_contained(page):
    text = page[0].read_text()
    assert "<script" not in text.lower()
    assert not re.search(r"\s(src|href)=", text)
    # The only URL is the SVG namespace name, which browsers never fetch.
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in text


def test_page_escapes_text_from_the_database(tmp_path):
    db = open_database(tmp_path / "x.db")
    db.conn.execute(
        "INSERT INTO users (id, email, created_at, updated_at) VALUES"
        " ('<b>x</b>', '<script>alert(1)</script>', '2026-01-01T00:00:00+00:00',"
        " '2026-01-01T00:00:00+00:00')"
    )
    text = render_html(build_report(db, now=NOW, since=timedelta(days=1), user_id="<b>x</b>"))
    assert "<script>" not in text and "&lt;script&gt;" in text
    db.close()


@needs_chromium
def test_chromium_renders_the_charts_with_the_daily_figures(page, tmp_path):
    path, expected = page
    dom = Dom()
    dom.feed(chromium("--dump-dom", path.as_uri(), profile=tmp_path / "profile").stdout)
    charts = {e["attrs"]["id"] for e in dom.elements if e["tag"] == "svg"}
    assert charts == {"chart-syncs", "chart-calls"}
    assert bars(dom, "chart-syncs") == {
        (day["date"], series): day[series]
        for day in expected["daily"]
        for series in ("success", "failure", "skipped")
    }
    assert bars(dom, "chart-calls") == {
        (day["date"], series): day[series]
        for day in expected["daily"]
        for series in ("api_calls_made", "api_calls_saved")
    }
    assert len(expected["daily"]) == 15


@needs_chromium
def test_chromium_renders_the_tables_with_the_recomputed_figures(page, tmp_path):
    path, expected = page
    dom = Dom()
    dom.feed(chromium("--dump-dom", path.as_uri(), profile=tmp_path / "profile").stdout)
    cells = [c.strip() for c in dom.cells]
    syncs, calls = expected["syncs"]["total"], expected["api_calls"]["total"]
    all_rows = [i for i, c in enumerate(cells) if c == "all"]
    sync_row = cells[all_rows[2] : all_rows[2] + 7]  # tables: tokens, breakers, syncs, ...
    assert sync_row == [
        "all", str(syncs["attempts"]), str(syncs["success"]), str(syncs["failure"]),
        str(syncs["skipped"]), f"{syncs['success_rate_percent']:g}%", str(syncs["full_resyncs"]),
    ]  # fmt: skip
    assert f"{calls['saved_share_percent']:g}%" in cells
    for reconnect in expected["token_health"]["reconnect_required"]:
        assert reconnect["user_id"] in cells


@needs_chromium
def test_chromium_screenshot_shows_coloured_bars(page, tmp_path):
    path, _ = page
    shot = tmp_path / "shot.png"
    chromium(
        "--window-size=1400,380", f"--screenshot={shot}", path.as_uri(),
        profile=tmp_path / "profile",
    )  # fmt: skip
    colours = png_pixels(shot)
    assert SYNC_GREEN in colours and MADE_BLUE in colours


def test_page_aligns_negative_savings_right_like_the_terminal(tmp_path):
    # GIVEN an early webhook sync that cost a call more than the schedule would have
    db = open_database(tmp_path / "x.db")
    created = "2026-03-01T00:00:00+00:00"
    db.conn.execute(
        "INSERT INTO users (id, email, created_at, updated_at) VALUES ('u1', NULL, ?, ?)",
        [created, created],
    )
    db.conn.execute(
        "INSERT INTO sync_metrics (user_id, integration_type, sync_type, trigger, result,"
        " duration_ms, items_processed, items_added, items_updated, items_deleted, full_resync,"
        " api_calls_made, api_calls_saved, saved_by, created_at) VALUES ('u1',"
        " 'google_calendar', 'incremental', 'webhook', 'success', 5, 1, 1, 0, 0, 0, 3, -1,"
        " 'webhook', ?)",
        [(NOW - timedelta(hours=1)).isoformat()],
    )
    # WHEN the page is rendered
    text = render_html(build_report(db, now=NOW, since=timedelta(days=1)))
    db.close()
    # THEN the API calls table aligns the saved and webhook columns (-1) and the share (-50%) right
    calls = re.search(r"<h2>API calls, last 1d</h2><table>(.*?)</table>", text).group(1)
    header = re.findall(r"<th( class=num)?>([^<]*)</th>", calls)
    assert [name for num, name in header if num] == [
        "made", "saved", "token health", "circuit breaker", "adaptive schedule", "webhook",
        "saved share",
    ]  # fmt: skip
    assert '<td class="num">-1</td>' in calls and '<td class="num">-50%</td>' in calls
