"""HTTP only: Google sessions, retries, request counting and error classes (never the store)."""

from syncctl.google.errors import (
    AuthError,
    GoogleError,
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
    "QuotaError",
    "SyncTokenExpired",
    "TransientError",
    "UnexpectedResponse",
    "classify",
]
