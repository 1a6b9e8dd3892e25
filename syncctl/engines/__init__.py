"""Sync engines: fetch pages from a GoogleSession, save each page in one transaction, report."""

from __future__ import annotations

from dataclasses import dataclass

from syncctl.model import SyncType


@dataclass(frozen=True)
class SyncOutcome:
    """What one engine run did, as the orchestrator records it.

    `sync_type` is `full` when any scope of the run was listed without a sync token (first
    sync, `--full`, a calendar seen for the first time, or an expired token); `full_resync`
    is True when an expired sync token forced that. Counts are rows of the mirror tables
    (contacts and groups; calendars and events) that were added, changed or deleted, so a
    run that found nothing new has all three at zero. `api_calls_made` counts the HTTP
    requests the run sent (GoogleSession.calls_made during the run).
    """

    sync_type: SyncType
    items_processed: int
    added: int
    updated: int
    deleted: int
    full_resync: bool = False
    api_calls_made: int = 0

    @property
    def changed(self) -> bool:
        """Whether the run changed any stored row."""
        return bool(self.added or self.updated or self.deleted)


__all__ = ["SyncOutcome"]
