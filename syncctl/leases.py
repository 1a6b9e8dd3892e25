"""Taking and releasing per-pair leases (SPEC 5): the edge around policy/leases.py.

A holder is `host/pid/nonce`: one per attempt, so two threads of one process never share a
lease. Whether a holder still runs can only be known on its own host (`os.kill(pid, 0)`); a
holder on another host is left to its expiry.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from syncctl.config import Settings
from syncctl.model import Integration, Lease
from syncctl.policy import leases as lease_policy
from syncctl.store import leases as lease_store
from syncctl.store import transaction

log = logging.getLogger("syncctl.leases")


class PairBusy(RuntimeError):
    """Another process holds the pair's lease: this attempt did not start."""


def new_holder() -> str:
    """A holder name unique to this attempt: host, process id and a random nonce."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def holder_alive(holder: str) -> bool | None:
    """Whether a holder's process still runs: None when it is on another host (unknowable)."""
    host, _, rest = holder.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that pid: alive as far as we know
        return True
    except OSError:
        return None
    return True


def take_lease(
    db: sqlite_utils.Database,
    user_id: str,
    integration: Integration,
    *,
    holder: str,
    now: datetime,
    settings: Settings,
) -> lease_policy.LeaseDecision:
    """Decide and store the pair's lease under the write lock (one winner among processes)."""

    def decide(current: Lease | None, alive: bool | None) -> lease_policy.LeaseDecision:
        return lease_policy.acquire(
            current,
            user_id=user_id,
            integration_type=integration.value,
            holder=holder,
            now=now,
            settings=settings,
            holder_alive=alive,
        )

    current = None
    with transaction(db) as tx:
        # Most pairs have no lease row (its last holder released it): what the policy grants a
        # free pair is stored if the row is indeed absent, and only a row that is there is read.
        decision = decide(None, None)
        lease = decision.lease if decision.granted else None
        if lease is None or not lease_store.save_lease_if_free(tx, lease):
            current = lease_store.load_lease(tx, user_id, integration.value)
            alive = holder_alive(current.holder) if current and current.holder != holder else None
            decision = decide(current, alive)
            if decision.granted and decision.lease is not None:
                lease_store.save_lease(tx, decision.lease)
    if decision.verdict in (
        lease_policy.LeaseVerdict.EXPIRED,
        lease_policy.LeaseVerdict.HOLDER_GONE,
    ):
        log.info(
            "took over the lease of %s %s from %s (%s)",
            user_id,
            integration.cli_name,
            current.holder if current else "-",
            decision.verdict,
        )
    return decision


def release_lease(
    db: sqlite_utils.Database, user_id: str, integration: Integration, holder: str
) -> None:
    """Give the pair's lease back, if this holder still has it."""
    with transaction(db) as tx:
        _release(tx, user_id, integration, holder)


def _release(tx: sqlite3.Connection, user_id: str, integration: Integration, holder: str) -> None:
    if lease_policy.may_release(lease_store.load_lease(tx, user_id, integration.value), holder):
        lease_store.delete_lease(tx, user_id, integration.value)


@dataclass
class HeldLease:
    """The lease a `pair_lease` block holds; `release_in` gives it back inside the caller's
    transaction (with the attempt's record), and the caller sets `released` once that committed,
    so the block's end has nothing left to write."""

    user_id: str
    integration: Integration
    holder: str
    released: bool = False

    def release_in(self, tx: sqlite3.Connection, current: Lease | None) -> None:
        """Delete the lease in the caller's transaction, if this holder still has it (`current`:
        the pair's lease as read in that transaction)."""
        if lease_policy.may_release(current, self.holder):
            lease_store.delete_lease(tx, self.user_id, self.integration.value)


@contextmanager
def pair_lease(
    db: sqlite_utils.Database,
    user_id: str,
    integration: Integration,
    *,
    now: datetime,
    settings: Settings,
) -> Iterator[HeldLease]:
    """Hold the pair's lease for the block; raise PairBusy when a live holder has it."""
    holder = new_holder()
    decision = take_lease(db, user_id, integration, holder=holder, now=now, settings=settings)
    if not decision.granted:
        held_by = decision.lease.holder if decision.lease else "another process"
        raise PairBusy(f"{user_id} {integration.cli_name} is being synced by {held_by}")
    lease = HeldLease(user_id, integration, holder)
    try:
        yield lease
    finally:
        if not lease.released:
            release_lease(db, user_id, integration, holder)
