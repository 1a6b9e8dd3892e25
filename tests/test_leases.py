"""Per-pair leases in SQLite: one holder at a time, across processes; dead holders taken over."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from syncctl.clock import utcnow
from syncctl.config import Settings
from syncctl.leases import PairBusy, holder_alive, new_holder, pair_lease, take_lease
from syncctl.model import Integration, Lease
from syncctl.policy.leases import LeaseVerdict
from syncctl.store import leases as lease_store
from syncctl.store import transaction

CAL = Integration.CALENDAR
SETTINGS = Settings(lease_seconds=600)


def dead_holder() -> str:
    """The holder name of a process of this host that has exited."""
    child = subprocess.run(
        [sys.executable, "-c", "from syncctl.leases import new_holder; print(new_holder())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return child.stdout.strip()


def test_a_second_holder_is_refused_while_the_first_holds_the_pair(db):
    now = utcnow()
    with pair_lease(db, "u1", CAL, now=now, settings=SETTINGS) as held:
        assert [lease.holder for lease in lease_store.list_leases(db.conn)] == [held.holder]
        with pytest.raises(PairBusy, match="u1 calendar is being synced by"):
            with pair_lease(db, "u1", CAL, now=now, settings=SETTINGS):
                pass  # pragma: no cover
        with pair_lease(db, "u1", Integration.CONTACTS, now=now, settings=SETTINGS):
            pass  # another pair is free
    assert lease_store.list_leases(db.conn) == []


def test_the_lease_is_released_when_the_attempt_raises(db):
    with pytest.raises(ZeroDivisionError):
        with pair_lease(db, "u1", CAL, now=utcnow(), settings=SETTINGS):
            1 / 0  # noqa: B018
    assert lease_store.list_leases(db.conn) == []


def test_a_lease_of_a_dead_process_is_taken_over_at_once(db):
    now = utcnow()
    gone = dead_holder()
    assert holder_alive(gone) is False
    with transaction(db) as tx:
        lease_store.save_lease(tx, Lease("u1", CAL.value, gone, now + timedelta(minutes=9)))

    decision = take_lease(db, "u1", CAL, holder=new_holder(), now=now, settings=SETTINGS)

    assert (decision.granted, decision.verdict) == (True, LeaseVerdict.HOLDER_GONE)


def test_a_lease_of_another_host_waits_for_its_expiry(db):
    now = utcnow()
    remote = "some-other-host.example/4242/abcd"
    assert holder_alive(remote) is None
    with transaction(db) as tx:
        lease_store.save_lease(tx, Lease("u1", CAL.value, remote, now + timedelta(minutes=9)))

    refused = take_lease(db, "u1", CAL, holder=new_holder(), now=now, settings=SETTINGS)
    later = take_lease(
        db, "u1", CAL, holder=new_holder(), now=now + timedelta(minutes=9), settings=SETTINGS
    )

    assert (refused.granted, refused.verdict) == (False, LeaseVerdict.HELD)
    assert (later.granted, later.verdict) == (True, LeaseVerdict.EXPIRED)


def test_a_live_process_of_this_host_keeps_its_lease(db):
    now = utcnow()
    mine = new_holder()  # this very process
    assert holder_alive(mine) is True
    take_lease(db, "u1", CAL, holder=mine, now=now, settings=SETTINGS)

    decision = take_lease(db, "u1", CAL, holder=new_holder(), now=now, settings=SETTINGS)

    assert not decision.granted


def test_a_lease_released_in_a_transaction_that_rolled_back_is_released_at_the_end(db):
    with pair_lease(db, "u1", CAL, now=utcnow(), settings=SETTINGS) as lease:
        with pytest.raises(ZeroDivisionError), transaction(db) as tx:
            lease.release_in(tx, lease_store.load_lease(tx, "u1", CAL.value))
            1 / 0  # noqa: B018
        assert [held.holder for held in lease_store.list_leases(db.conn)] == [lease.holder]
    assert lease_store.list_leases(db.conn) == []
