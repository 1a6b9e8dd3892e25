"""How a report's cells read: durations, times, percentages, and which cells are figures."""

from __future__ import annotations


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


def percent(value: float | None) -> str | None:
    """`97.5%`, or None when the figure is undefined."""
    return None if value is None else f"{value:g}%"


def is_figure(text: str) -> bool:
    """Whether a rendered cell is a number or a percentage, negative ones included, or the dash
    of a missing value: the terminal and the HTML page align such columns right."""
    return text == "-" or text.rstrip("%").removeprefix("-").replace(".", "", 1).isdigit()
