"""The `sync_metrics` table: one row per orchestrated attempt."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass

from syncctl.model import ErrorClass, Integration, Result, SavedBy, SkipReason, SyncType, Trigger


@dataclass(frozen=True)
class AttemptRecord:
    """Everything one attempt writes to `sync_metrics`."""

    user_id: str
    integration_type: Integration
    trigger: Trigger
    result: Result
    created_at: str
    sync_type: SyncType | None = None
    skip_reason: SkipReason | None = None
    duration_ms: int = 0
    items_processed: int = 0
    items_added: int = 0
    items_updated: int = 0
    items_deleted: int = 0
    full_resync: bool = False
    breaker_trial: bool = False  # the half-open trial of an open breaker (one probe, no retries)
    api_calls_made: int = 0
    api_calls_saved: int = 0
    saved_by: SavedBy | None = None
    error_class: ErrorClass | None = None
    error_message: str | None = None


COLUMNS = tuple(AttemptRecord.__dataclass_fields__)


def insert_attempt(conn: sqlite3.Connection, record: AttemptRecord) -> int:
    """Write one attempt row (inside the caller's transaction); returns its id."""
    values = asdict(record)
    values["full_resync"] = int(record.full_resync)
    values["breaker_trial"] = int(record.breaker_trial)
    marks = ", ".join("?" * len(COLUMNS))
    cursor = conn.execute(
        f"INSERT INTO sync_metrics ({', '.join(COLUMNS)}) VALUES ({marks})",
        [values[name] for name in COLUMNS],
    )
    return int(cursor.lastrowid or 0)


def average_calls(
    conn: sqlite3.Connection,
    user_id: str,
    integration: Integration,
    result: Result,
    sync_type: SyncType | None = None,
    *,
    recent: int = 10,
) -> float | None:
    """Mean api_calls_made over the pair's recent attempts with this result (and sync type),
    half-open trials left out (they are single probes, not what an attempt costs)."""
    row = conn.execute(
        "SELECT avg(api_calls_made) FROM (SELECT api_calls_made FROM sync_metrics"
        " WHERE user_id = ? AND integration_type = ? AND result = ? AND breaker_trial = 0"
        " AND (? IS NULL OR sync_type = ?) ORDER BY created_at DESC, id DESC LIMIT ?)",
        [user_id, integration.value, result.value, sync_type, sync_type, recent],
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])
