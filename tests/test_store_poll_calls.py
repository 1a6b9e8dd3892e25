"""What the savings estimate reads of a pair's recent polls (store.state.load_pair_state):
each poll's calls less its overhead (channel upkeep, token refreshes), and before the first
incremental poll, the first full sync's."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncctl.model import AttemptRecord, Integration, Result, SyncType, Trigger
from syncctl.store import open_database, transaction
from syncctl.store import state as state_store
from syncctl.store.metrics import insert_attempt

USER = "gwen"
CAL = Integration.CALENDAR


def _row(minute: int, sync_type: SyncType, made: int, overhead: int, trigger=Trigger.SCHEDULED):
    return AttemptRecord(
        user_id=USER,
        integration_type=CAL,
        trigger=trigger,
        result=Result.SUCCESS,
        created_at=f"2026-12-01T12:{minute:02d}:00+00:00",
        sync_type=sync_type,
        api_calls_made=made,
        overhead_calls=overhead,
    )


FULL, INC = SyncType.FULL, SyncType.INCREMENTAL


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param([], (), id="no-history"),
        pytest.param([_row(0, FULL, 7, 4)], (3,), id="first-full-sync-before-any-poll"),
        pytest.param(
            [_row(0, FULL, 7, 4), _row(1, INC, 6, 3), _row(2, INC, 3, 0)],
            (3, 3),
            id="renewal-and-fresh-token-polls-read-alike",
        ),
        pytest.param(
            [_row(0, FULL, 7, 4), _row(1, INC, 2, 1, Trigger.WEBHOOK)],
            (3,),
            id="notified-syncs-are-not-polls",
        ),
    ],
)
def test_recent_poll_calls_are_reads(tmp_path: Path, rows: list, expected: tuple) -> None:
    db = open_database(tmp_path / "syncctl.db")
    try:
        with transaction(db) as tx:
            for row in rows:
                insert_attempt(tx, row)
        state = state_store.load_pair_state(db.conn, USER, CAL)
    finally:
        db.close()
    assert tuple(reads for reads, _skipped in state.recent_poll_calls) == expected
