"""run_due's workers, connections and sessions, and the half-open trial under concurrency."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_orchestrator import CALENDAR, CONTACTS, HOUR, World, make_world, outcomes

from syncctl import fleet
from syncctl.clock import to_iso
from syncctl.model import Result, SkipReason, Trigger
from syncctl.orchestrator import Orchestrator
from syncctl.runlock import run_due_lock
from syncctl.store import open_database, transaction
from syncctl.store import users as user_store


def open_files(prefix: str) -> int:
    """How many of this process's descriptors point at paths starting with prefix."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(prefix):
                count += 1
        except OSError:
            continue
    return count


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Keep the garbage collector from closing what the code under test should close itself."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_users_due_pairs_share_one_token_refresh_in_a_run(world: World):
    world.add_user("ann", (CONTACTS, CALENDAR))

    attempts = world.run_due(concurrency=8)

    assert outcomes(attempts) == [("calendar", "success", None), ("contacts", "success", None)]
    assert world.fake.request_count(user_id="ann", endpoint="oauth.token") == 1


def test_run_due_leaves_no_database_connection_per_pool_thread(world: World):
    for n in range(6):
        world.add_user(f"u{n}")
    db_file = str(world.db_path)

    def run_due(times: int) -> None:
        for _ in range(times):
            world.run_due(concurrency=4)
            world.clock.advance(5 * HOUR)

    # SQLite keeps a closed connection's descriptor for reuse while another connection of the
    # process holds a lock on the file, so the count settles near the concurrency instead of
    # dropping to one; kept connections would add about one per pool thread and run.
    run_due(2)
    settled = open_files(db_file)
    run_due(10)

    assert open_files(db_file) <= settled + 4


def test_attempts_close_their_connections_to_google(world: World, no_gc):
    for n in range(4):
        world.add_user(f"u{n}", (CONTACTS, CALENDAR))
    before = open_files("socket:")

    world.run_due(concurrency=4)  # the run's worker threads close their connections with it
    world.orchestrator.attempt("u0", CALENDAR, Trigger.MANUAL)
    world.orchestrator.check_token("u1")
    # This thread's sessions reuse one keep-alive connection, closed with the orchestrator.
    world.orchestrator.close()

    # The fake closes its end once ours is closed; allow its threads a moment to notice.
    for _ in range(50):
        if open_files("socket:") <= before:
            break
        threading.Event().wait(0.02)
    assert open_files("socket:") <= before


def test_only_one_half_open_trial_runs_when_two_orchestrators_race_for_it(world: World):
    world.add_user("ann")
    world.fake.set_always_fail("ann", 503)
    for _ in range(3):
        world.run_due()
        world.clock.advance(timedelta(minutes=10))  # past each failure's backoff
    world.fake.heal("ann")
    world.clock.advance(HOUR)
    world.fake.set_latency(0.3)  # the trial is still running when the second attempt starts
    other = Orchestrator(world.settings, clock=world.clock, sleep=lambda seconds: None)
    results = {}

    def trial() -> None:
        results["run-due"] = world.run_due()

    runner = threading.Thread(target=trial)
    runner.start()
    started = threading.Event()
    for _ in range(100):  # until the trial's half-open lease is stored
        if world.breaker("ann")["state"] == "half_open":
            started.set()
            break
        threading.Event().wait(0.01)
    manual = other.attempt("ann", CALENDAR, Trigger.MANUAL)
    runner.join()
    other.close()

    assert started.is_set()
    assert (manual.result, manual.skip_reason, manual.api_calls_made) == (
        Result.SKIPPED,
        SkipReason.CIRCUIT_OPEN,
        0,
    )
    assert outcomes(results["run-due"]) == [("calendar", "success", None)]
    assert world.breaker("ann")["state"] == "closed"


def test_overlapping_run_dues_in_one_process_sync_each_pair_once(world: World):
    for n in range(4):
        world.add_user(f"u{n}")
    world.fake.set_latency(0.05)
    settings = world.settings.with_overrides(concurrency=2)
    other = Orchestrator(settings, clock=world.clock, sleep=lambda seconds: None)
    summaries = []
    threads = [
        threading.Thread(target=lambda o=o: summaries.append(fleet.run_due(o)))
        for o in (world.runner(2), other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()

    ran = [s for s in summaries if s is not None]
    assert len(ran) == 1 and summaries.count(None) == 1
    assert world.rows(
        "SELECT user_id, count(*) FROM sync_metrics GROUP BY user_id ORDER BY user_id"
    ) == [(f"u{n}", 1) for n in range(4)]


def test_a_webhook_pending_trigger_survives_a_manual_sync(world: World):
    world.add_user("ann")
    world.run_due()
    conn = sqlite3.connect(world.db_path)
    with conn:
        conn.execute(
            "UPDATE sync_schedule SET pending_trigger = 'webhook', next_sync_at = ?",
            [to_iso(world.clock())],
        )
    conn.close()

    world.orchestrator.attempt("ann", CALENDAR, Trigger.MANUAL)
    (attempt,) = world.run_due()

    assert attempt.trigger == Trigger.WEBHOOK
    assert world.rows("SELECT pending_trigger FROM sync_schedule") == [(None,)]
    assert world.schedule("ann")["next_sync_at"] == to_iso(world.clock() + 4 * HOUR)


def remove_once_ann_is_syncing(world: World, user_id: str) -> threading.Thread:
    """A started thread that removes user_id as soon as the fake has seen a request of ann's."""

    def remove() -> None:
        for _ in range(100):
            if world.fake.request_count(user_id="ann"):
                break
            threading.Event().wait(0.01)
        db = open_database(world.db_path)
        try:
            with transaction(db) as tx:
                user_store.remove_user(tx, user_id, purge=False)
        finally:
            db.close()

    remover = threading.Thread(target=remove)
    remover.start()
    return remover


def test_a_user_removed_while_run_due_runs_is_passed_over_and_the_run_completes(world: World):
    world.add_user("ann")
    world.add_user("bob")
    world.fake.set_latency(0.1)  # ann's sync is still running when bob is removed

    remover = remove_once_ann_is_syncing(world, "bob")
    attempts = world.run_due(concurrency=1)
    remover.join()

    assert [(a.user_id, a.result) for a in attempts] == [("ann", Result.SUCCESS)]
    assert world.rows("SELECT user_id FROM sync_metrics") == [("ann",)]
    assert world.fake.request_count(user_id="bob") == 0


def test_a_user_removed_during_its_own_sync_gets_its_metrics_row_and_no_state_back(world: World):
    world.add_user("ann", (CONTACTS, CALENDAR))
    world.fake.set_latency(0.1)

    remover = remove_once_ann_is_syncing(world, "ann")
    attempts = world.run_due(concurrency=1)
    remover.join()

    assert len(attempts) == 1  # the second pair's attempt found the user gone
    assert world.rows("SELECT user_id, result FROM sync_metrics") == [("ann", "success")]
    for table in ("token_health", "circuit_breaker_state", "sync_schedule", "notifications"):
        assert world.rows(f"SELECT count(*) FROM {table}") == [(0,)], table  # noqa: S608


def test_token_checks_of_a_fleet_run_concurrently_and_store_each_verdict(world: World):
    user_ids = [f"u{n:02d}" for n in range(12)]
    for user_id in user_ids:
        world.add_user(user_id)
    world.fake.revoke("u03")
    world.fake.set_latency(0.2)  # one at a time, the twelve refreshes take 2.4 s

    started = time.monotonic()
    checked = fleet.check_tokens(world.runner(12), user_ids)
    elapsed = time.monotonic() - started

    assert elapsed < 1.5
    assert {u: status for u, (status, _) in checked.items()} == {
        u: "revoked" if u == "u03" else "valid" for u in user_ids
    }
    assert world.rows("SELECT user_id FROM token_health WHERE status = 'revoked'") == [("u03",)]
    assert world.rows("SELECT count(*) FROM token_health WHERE status = 'valid'") == [(11,)]


def test_the_run_due_lock_is_shared_by_every_path_to_the_same_database(tmp_path: Path):
    real = tmp_path / "data" / "syncctl.db"
    real.parent.mkdir()
    real.touch()
    link = tmp_path / "syncctl-link.db"
    link.symlink_to(real)

    with run_due_lock(real) as first, run_due_lock(link) as second:
        assert (first, second) == (True, False)
    with run_due_lock(link) as again:
        assert again is True


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((700, 10, 10), (10_000, 10, 10)),  # CPython's default young threshold is raised
        ((50_000, 5, 5), (50_000, 5, 5)),  # a higher one, set by the embedding program, is kept
    ],
)
def test_a_syncing_process_collects_its_young_objects_less_often(before, after):
    saved = gc.get_threshold()
    try:
        gc.set_threshold(*before)
        fleet.tune_collector()
        assert gc.get_threshold() == after
    finally:
        gc.set_threshold(*saved)
