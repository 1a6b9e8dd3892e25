"""The shared quota budget (SPEC 8): threads and processes on one database spend one budget."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncctl.config import Settings
from syncctl.google import QuotaBudgetSpent
from syncctl.quota import QuotaBudget, api_of
from syncctl.store import open_database
from syncctl.store.quota import usage_since

START = datetime(2026, 12, 1, 12, 0, 0, 500_000, tzinfo=UTC)
EVENTS_URI = "http://127.0.0.1:1/calendar/v3/calendars/primary/events?maxResults=2500"
BUDGET = 50


class SteppingClock:
    """A clock that moves only when the budget sleeps on it."""

    def __init__(self) -> None:
        self.moment = START
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.moment += timedelta(seconds=seconds)


def spend_until_refused(db_path: str, attempts: int, threads: int, results) -> None:
    """One process: `threads` threads each try `attempts` requests; put the grants counted."""
    settings = Settings(
        db_path=Path(db_path), quota_calendar_per_minute=BUDGET, quota_max_wait_seconds=0.001
    )
    local = threading.local()
    connections = []

    def db():
        if not hasattr(local, "db"):
            local.db = open_database(db_path)
            connections.append(local.db)
        return local.db

    budget = QuotaBudget(settings, db, clock=lambda: START, sleep=lambda s: None)
    granted = [0] * threads

    def worker(index: int) -> None:
        for _ in range(attempts):
            try:
                budget.spend(EVENTS_URI)
                granted[index] += 1
            except QuotaBudgetSpent:
                pass

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    for connection in connections:
        connection.close()
    results.put(sum(granted))


def test_two_processes_on_one_database_never_exceed_the_budget_together(tmp_path):
    db_path = str(tmp_path / "quota.db")
    open_database(db_path).close()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=spend_until_refused, args=(db_path, 20, 4, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    granted = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert sum(granted) == BUDGET  # 160 tried, exactly the budget granted, none beyond it
    db = open_database(db_path)
    assert usage_since(db.conn, 0) == {"calendar": BUDGET}
    db.close()


def test_a_spent_budget_waits_until_the_minute_has_room(db):
    clock = SteppingClock()
    settings = Settings(quota_calendar_per_minute=2, quota_max_wait_seconds=120)
    budget = QuotaBudget(settings, lambda: db, clock=clock.now, sleep=clock.sleep)

    for _ in range(3):
        budget.spend(EVENTS_URI)

    assert clock.slept == [pytest.approx(60.5)]  # the first second's grants leave the window
    assert usage_since(db.conn, 0) == {"calendar": 3}


def test_a_wait_longer_than_the_limit_is_refused_with_its_retry_after(db):
    clock = SteppingClock()
    settings = Settings(quota_people_per_minute=1, quota_max_wait_seconds=10)
    budget = QuotaBudget(settings, lambda: db, clock=clock.now, sleep=clock.sleep)
    budget.spend("http://127.0.0.1:1/v1/people/me/connections?pageSize=1000")

    with pytest.raises(QuotaBudgetSpent) as refused:
        budget.spend("http://127.0.0.1:1/v1/contactGroups?pageSize=1000")

    assert refused.value.retry_after == pytest.approx(60.5)
    assert clock.slept == []
    assert usage_since(db.conn, 0) == {"people": 1}


def test_reserved_grants_are_spent_within_their_second_and_the_rest_given_back(db):
    clock = SteppingClock()
    settings = Settings(quota_calendar_per_minute=1200)  # reservations of 10
    budget = QuotaBudget(settings, lambda: db, clock=clock.now, sleep=clock.sleep)
    for _ in range(3):
        budget.spend(EVENTS_URI)
    assert usage_since(db.conn, 0) == {"calendar": 10}  # one reservation, 3 of it spent

    clock.moment += timedelta(seconds=1)  # the next second: the 7 left are given back
    budget.spend(EVENTS_URI)
    second = int(START.timestamp())
    rows = db.conn.execute("SELECT second, used FROM quota_usage ORDER BY second").fetchall()
    assert rows == [(second, 3), (second + 1, 10)]

    budget.release()  # the end of a run: what is left of the second goes back too
    assert usage_since(db.conn, 0) == {"calendar": 4}


def spend_and_count(db_path: str, budget_per_minute: int, attempts: int, threads: int, results):
    """One process: `threads` threads try `attempts` requests each; put what was sent."""
    settings = Settings(
        db_path=Path(db_path),
        quota_calendar_per_minute=budget_per_minute,
        quota_max_wait_seconds=0.001,
    )
    local = threading.local()
    connections = []

    def db():
        if not hasattr(local, "db"):
            local.db = open_database(db_path)
            connections.append(local.db)
        return local.db

    budget = QuotaBudget(settings, db, clock=lambda: START, sleep=lambda s: None)
    sent = [0] * threads

    def worker(index: int) -> None:
        for number in range(attempts):
            if index == 0 and number == attempts // 2:
                budget.release()  # a run ending half way gives its reservation back
            try:
                budget.spend(EVENTS_URI)
                sent[index] += 1
            except QuotaBudgetSpent:
                pass

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    budget.release()
    for connection in connections:
        connection.close()
    results.put(sum(sent))


def test_two_processes_reserving_grants_never_send_more_than_the_budget_together(tmp_path):
    db_path = str(tmp_path / "quota.db")
    open_database(db_path).close()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    budget = 1230  # reservations of 10: the budget is not a multiple of them
    processes = [
        context.Process(target=spend_and_count, args=(db_path, budget, 200, 4, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    sent = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert sum(sent) <= budget  # 1,600 tried in one second
    db = open_database(db_path)
    assert usage_since(db.conn, 0) == {"calendar": sum(sent)}  # every unsent grant given back
    db.close()


@pytest.mark.parametrize(
    ("uri", "api"),
    [
        ("https://www.googleapis.com/calendar/v3/users/me/calendarList", "calendar"),
        ("https://www.googleapis.com/calendar/v3/channels/stop", "calendar"),
        ("https://people.googleapis.com/v1/people/me/connections?syncToken=x", "people"),
        ("https://people.googleapis.com/v1/contactGroups", "people"),
        ("https://oauth2.googleapis.com/token", None),
        ("https://oauth2.googleapis.com/tokeninfo?access_token=x", None),
    ],
)
def test_requests_spend_from_their_apis_budget_and_token_calls_from_none(uri, api):
    assert api_of(uri) == api
