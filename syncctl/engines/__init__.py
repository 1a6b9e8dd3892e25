"""Sync engines: fetch pages from a GoogleSession, save each page in one transaction, report."""

from __future__ import annotations

from syncctl.model import SyncOutcome

__all__ = ["SyncOutcome"]
