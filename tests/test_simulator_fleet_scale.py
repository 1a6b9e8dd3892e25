"""The simulator's fleet-scale pieces: the oracle lower bound, the receiver's dispatch in virtual
time, and the dropped share of notifications honoured end to end."""

from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import Settings
from syncctl.model import Integration
from syncctl.simulation import compare
from syncctl.simulation.clock import VirtualClock
from syncctl.simulation.oracle import Oracle, oracle_bound, ratio
from syncctl.simulation.runs import VirtualDispatcher
from syncctl.simulation.stage import Change, scratch_directory

START = datetime(2026, 1, 5, tzinfo=UTC)
CAL, CON = Integration.CALENDAR, Integration.CONTACTS
HOUR = 3600


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


# -- the oracle ----------------------------------------------------------------------------------


def test_oracle_on_a_hand_computed_fleet():
    changes = [
        # ann at 0 s: two events in one calendar and a contact -> 2 bursts, 1 refresh
        Change(at(0), "ann", CAL, "calendar:work"),
        Change(at(0), "ann", CAL, "calendar:work"),
        Change(at(0), "ann", CON, "contacts"),
        # ann at 30 min, another calendar: 1 burst, the token is still live
        Change(at(1800), "ann", CAL, "calendar:home"),
        # ann at exactly one token lifetime after the first refresh: 1 burst, 1 refresh
        Change(at(HOUR), "ann", CAL, "calendar:work"),
        # bob at 2 h: 1 burst, 1 refresh; at 5 h, after his grant was revoked: unreachable
        Change(at(2 * HOUR), "bob", CON, "contacts"),
        Change(at(5 * HOUR), "bob", CON, "contacts"),
    ]

    oracle = oracle_bound(changes, token_seconds=HOUR, cut_off={"bob": at(4 * HOUR)})

    assert oracle == Oracle(bursts=5, refreshes=3, unreachable_bursts=1)
    assert oracle.calls == 8
    assert ratio(20, oracle) == 2.5


def test_oracle_of_no_change_is_zero_and_has_no_ratio():
    oracle = oracle_bound([], token_seconds=HOUR)

    assert oracle.calls == 0
    assert ratio(100, oracle) is None


# -- the receiver's dispatch on the virtual clock ------------------------------------------------


def test_notifications_coalesce_per_user_and_sync_when_the_window_closes():
    clock = VirtualClock(START)
    ran: list[tuple[datetime, str, frozenset[str]]] = []
    dispatcher = VirtualDispatcher(
        lambda user, calendars: ran.append((clock.now(), user, calendars)), window=2.0
    )
    dispatcher.notify("ann", "work", at(10))
    dispatcher.notify("ann", "home", at(11))  # inside ann's window: joins her sync
    dispatcher.notify("bob", "work", at(11))

    dispatcher.run_until(at(12), inclusive=False, clock=clock)
    assert ran == []  # the window closes at 12 s: nothing runs before it
    dispatcher.run_until(at(12), inclusive=True, clock=clock)
    assert ran == [(at(12), "ann", frozenset({"work", "home"}))]
    dispatcher.notify("ann", "work", at(12.5))  # after her sync: a new window
    dispatcher.run_until(at(60), inclusive=False, clock=clock)

    assert ran[1:] == [(at(13), "bob", frozenset({"work"})), (at(14.5), "ann", frozenset({"work"}))]
    assert dispatcher.dispatched == 3
    assert dispatcher.next_due() is None


@pytest.fixture(scope="module")
def webhook_runs():
    """The webhooks policy on one small fleet: no notification dropped, and every one dropped."""
    runs = {}
    with scratch_directory("syncctl-test-sim-") as workdir:
        for share in (0.0, 1.0):
            scenario = compare.simulation_scenario(
                users=4, days=1, seed=3, step_seconds=1800, drop_share=share
            )
            runs[share] = compare.run_policy(
                compare.WEBHOOKS, scenario, Settings(), workdir / str(share)
            )
    return runs


def test_a_notified_calendar_is_in_sqlite_when_the_window_closes_not_at_the_next_cron_tick(
    webhook_runs,
):
    run = webhook_runs[0.0]
    calendar = run.staleness["calendar"]

    assert run.notifications["dropped"] == 0
    assert run.notifications["sent"] > 0 and run.notifications["dispatched"] > 0
    assert calendar.mirrored > 0
    assert calendar.p50_seconds == calendar.p95_seconds == 2  # the coalescing window, not 30 min


def test_dropped_notifications_leave_changes_to_polling(webhook_runs):
    lost = webhook_runs[1.0]

    assert lost.notifications["sent"] == 0
    assert lost.notifications["dropped"] == webhook_runs[0.0].notifications["sent"]
    assert lost.notifications["dispatched"] == 0
    assert lost.staleness["calendar"].p50_seconds > 2
