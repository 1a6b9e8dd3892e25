"""`syncctl demo`: a small fleet on the fake Google, run by the real orchestrator over simulated
days that end now, so the database it leaves reads like a live one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from syncctl.config import Settings
from syncctl.fleet import RunSummary
from syncctl.model import Result
from syncctl.report import build_report
from syncctl.simulation.runs import PolicyRun, run_orchestrated
from syncctl.simulation.scenario import Scenario, make_scenario
from syncctl.simulation.stage import scratch_directory
from syncctl.store import open_database
from syncctl.users import BadInput

DEMO_USERS = 8
DEMO_DAYS = 3
DEMO_STEP_SECONDS = 1800


@dataclass
class DayProgress:
    """What the orchestrator did on one simulated day."""

    day: int
    days: int
    date: str
    attempts: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in Result})
    api_calls: int = 0
    happenings: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One progress line for stderr."""
        a = self.attempts
        return (
            f"day {self.day}/{self.days} ({self.date}): {a['success']} syncs ok, "
            f"{a['failure']} failed, {a['skipped']} skipped, {self.api_calls} API calls"
        )


def demo_scenario(now: datetime, *, users: int, days: int, seed: int) -> Scenario:
    """The demo fleet over `days` simulated days ending at the last half hour before `now`."""
    step = timedelta(seconds=DEMO_STEP_SECONDS)
    end = now - (now - now.replace(minute=0, second=0, microsecond=0)) % step
    start = end - timedelta(days=days)
    return make_scenario(
        users=users,
        days=days,
        seed=seed,
        start=start,
        step_seconds=DEMO_STEP_SECONDS,
        prefix="demo",
    )


def run_demo(
    scenario: Scenario,
    base: Settings,
    db_path: Path,
    *,
    on_day: Callable[[DayProgress], None] | None = None,
) -> PolicyRun:
    """Run the orchestrator over the demo scenario, reporting each simulated day as it ends."""
    current: list[DayProgress] = []

    def on_step(moment: datetime, summary: RunSummary, notes: list[str]) -> None:
        day = min(scenario.days, int((moment - scenario.start).total_seconds() // 86400) + 1)
        if current and current[0].day != day:
            if on_day is not None:
                on_day(current[0])
            current.clear()
        if not current:
            date = (scenario.start + timedelta(days=day - 1)).date().isoformat()
            current.append(DayProgress(day, scenario.days, date))
        progress = current[0]
        for record in summary.attempts:
            progress.attempts[record.result.value] += 1
            progress.api_calls += record.api_calls_made
        progress.happenings.extend(notes)

    run = run_orchestrated(scenario, base, db_path, name="demo", on_step=on_step)
    if current and on_day is not None:
        on_day(current[0])
    return run


def check_new_database(path: Path | None) -> None:
    """The demo writes only a new database: refuse a path that already holds something."""
    if path is not None and path.exists() and path.stat().st_size > 0:
        raise BadInput(
            f"{path} already exists; the demo only writes a new database"
            " (choose another --db path, or leave --db out to keep nothing)"
        )


@contextmanager
def demo_database(keep_at: Path | None) -> Iterator[Path]:
    """Where the demo writes: `keep_at` (a new file), else a database in a temporary directory
    that is removed on exit."""
    if keep_at is not None:
        check_new_database(keep_at)
        yield keep_at
        return
    with scratch_directory("syncctl-demo-") as directory:
        yield directory / "demo.db"


def demo_report(
    scenario: Scenario,
    base: Settings,
    keep_at: Path | None,
    *,
    on_day: Callable[[DayProgress], None] | None = None,
) -> dict:
    """Run the demo (in `keep_at`, or in a temporary database) and return the report of its span."""
    with demo_database(keep_at) as db_path:
        run_demo(scenario, base, db_path, on_day=on_day)
        db = open_database(db_path)
        try:
            return build_report(db, now=scenario.end, since=scenario.end - scenario.start)
        finally:
            db.close()
