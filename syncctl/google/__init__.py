"""HTTP only: Google sessions, retries, request counting and error classes (never the store)."""

from syncctl.google.errors import (
    AuthError,
    GoogleError,
    QuotaBudgetSpent,
    QuotaError,
    SyncTokenExpired,
    TransientError,
    UnexpectedResponse,
    classify,
)
from syncctl.google.session import GoogleSession, Page

__all__ = [
    "AuthError",
    "GoogleError",
    "GoogleSession",
    "Page",
    "QuotaBudgetSpent",
    "QuotaError",
    "SyncTokenExpired",
    "TransientError",
    "UnexpectedResponse",
    "classify",
]
