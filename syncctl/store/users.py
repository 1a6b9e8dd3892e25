"""Users, their integrations and their credentials (kept in a table apart from users)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from syncctl.clock import to_iso
from syncctl.model import (
    ALL_INTEGRATIONS,
    RECONNECT_NOTICE,
    BreakerRecord,
    Integration,
    ScheduleRecord,
    TokenStatus,
    UserCredentials,
    shown_integration,
)
from syncctl.secrets import Keyring
from syncctl.store import secrets as secret_store
from syncctl.store.readback import schedule_record

# The synced-data tables that `user remove --purge` empties for a user.
USER_DATA_TABLES = ("contacts", "contact_groups", "calendars", "calendar_events", "sync_tokens")
# The per-(user, integration) state that disappears with the user or the integration.
PAIR_STATE_TABLES = (
    "token_health",
    "circuit_breaker_state",
    "sync_schedule",
    "mass_delete_holds",
)


@dataclass(frozen=True)
class UserGrant:
    """One user to add or reconnect: `integrations=None` keeps what a known user has."""

    user_id: str
    credentials: UserCredentials
    email: str | None = None
    integrations: tuple[Integration, ...] | None = None


@dataclass(frozen=True)
class Reconnect:
    """What a (re)connected pair's state becomes, as the policy decides it: the token status,
    the breaker, and the schedule from the stored one (None for a new pair)."""

    token_status: TokenStatus
    breaker: BreakerRecord
    schedule: Callable[[Integration, ScheduleRecord | None], ScheduleRecord]


def save_users(
    conn: sqlite3.Connection,
    grants: Sequence[UserGrant],
    *,
    now: datetime,
    reconnect: Reconnect,
    reconnect_unchanged: bool = True,
) -> int:
    """Add or reconnect users (inside the caller's transaction); returns how many were new.

    A reconnect replaces the credentials, stores the `reconnect` state for each of the user's
    pairs, and resolves a pending reconnect notice. With `reconnect_unchanged=False` (imports),
    a known user whose grant is the same is only updated, so re-running an import does not
    forget a revoked verdict.
    """
    stamp = to_iso(now)
    ids = [grant.user_id for grant in grants]
    existing = _existing_integrations(conn, ids)
    keyring = secret_store.writing_keyring(conn)
    same_grant = _users_with_same_grant(conn, grants, keyring)
    reconnected = [g for g in grants if reconnect_unchanged or g.user_id not in same_grant]
    conn.executemany(
        "INSERT INTO users (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET email = coalesce(excluded.email, users.email),"
        " updated_at = excluded.updated_at",
        [(g.user_id, g.email, stamp, stamp) for g in grants],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO credentials (user_id, client_id, client_secret, refresh_token,"
        " access_token, token_expiry, scopes, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [_credential_row(g, stamp, keyring) for g in reconnected],
    )
    wanted = {g.user_id: _wanted_integrations(g, existing.get(g.user_id)) for g in grants}
    dropped = [
        (user_id, kind.value)
        for user_id, kinds in existing.items()
        for kind in kinds
        if kind not in wanted[user_id]
    ]
    for table in ("user_integrations", *PAIR_STATE_TABLES):
        conn.executemany(f"DELETE FROM {table} WHERE user_id = ? AND integration_type = ?", dropped)
    added = [
        (user_id, kind.value)
        for user_id, kinds in wanted.items()
        for kind in kinds
        if kind not in existing.get(user_id, ())
    ]
    fresh = {g.user_id for g in reconnected}
    reset = added + [
        (user_id, kind.value)
        for user_id, kinds in wanted.items()
        if user_id in fresh
        for kind in kinds
        if kind in existing.get(user_id, ())
    ]
    conn.executemany(
        "INSERT INTO user_integrations (user_id, integration_type, created_at) VALUES (?, ?, ?)",
        [(*pair, stamp) for pair in added],
    )
    status = reconnect.token_status.value
    conn.executemany(
        "INSERT OR REPLACE INTO token_health (user_id, integration_type, status,"
        " last_checked, error_message) VALUES (?, ?, ?, NULL, NULL)",
        [(*pair, status) for pair in reset],
    )
    breaker = breaker_values(reconnect.breaker)
    conn.executemany(
        "INSERT OR REPLACE INTO circuit_breaker_state (user_id, integration_type, state,"
        " failure_count, last_failure_at, last_failure_reason, opened_at, next_retry_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(*pair, *breaker) for pair in reset],
    )
    # Only pairs of known users can have a stored schedule; a new pair's is the same for every
    # pair of an integration, so the policy is asked once per integration for those.
    stored = _stored_schedules(conn, [pair for pair in reset if pair[0] in existing])
    fresh_schedule: dict[str, tuple] = {}
    rows = []
    for user, kind in reset:
        found = stored.get((user, kind))
        if found is None:
            if kind not in fresh_schedule:
                first = reconnect.schedule(Integration(kind), None)
                fresh_schedule[kind] = _schedule_values(first)
            rows.append((user, kind, *fresh_schedule[kind], None))
        else:
            record, pending = found
            updated = reconnect.schedule(Integration(kind), record)
            rows.append((user, kind, *_schedule_values(updated), pending))
    conn.executemany(
        "INSERT OR REPLACE INTO sync_schedule (user_id, integration_type,"
        " default_frequency_seconds, current_frequency_seconds, consecutive_no_changes,"
        " last_sync_at, next_sync_at, pending_trigger) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "UPDATE notifications SET resolved_at = ? WHERE user_id = ? AND kind = ?"
        " AND resolved_at IS NULL",
        [(stamp, user_id, RECONNECT_NOTICE) for user_id in fresh],
    )
    return len(set(ids) - set(existing))


def _stamp(moment: datetime | None) -> str | None:
    return to_iso(moment) if moment else None


def breaker_values(record: BreakerRecord) -> tuple:
    """A breaker as its circuit_breaker_state row stores it (state .. next_retry_at)."""
    return (
        record.state.value,
        record.failure_count,
        _stamp(record.last_failure_at),
        record.last_failure_reason,
        _stamp(record.opened_at),
        _stamp(record.next_retry_at),
    )


def _schedule_values(record: ScheduleRecord) -> tuple:
    return (
        record.default_frequency_seconds,
        record.current_frequency_seconds,
        record.consecutive_no_changes,
        _stamp(record.last_sync_at),
        to_iso(record.next_sync_at),
    )


def _stored_schedules(
    conn: sqlite3.Connection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[ScheduleRecord, str | None]]:
    wanted = set(pairs)
    found: dict[tuple[str, str], tuple[ScheduleRecord, str | None]] = {}
    for chunk in _chunks(sorted({user for user, _ in pairs})):
        marks = ",".join("?" * len(chunk))
        for user, kind, default, current, no_changes, last_at, next_at, pending in conn.execute(
            "SELECT user_id, integration_type, default_frequency_seconds,"
            " current_frequency_seconds, consecutive_no_changes, last_sync_at, next_sync_at,"
            f" pending_trigger FROM sync_schedule WHERE user_id IN ({marks})",
            chunk,
        ):
            if (user, kind) in wanted:
                record = schedule_record(default, current, no_changes, last_at, next_at)
                found[(user, kind)] = (record, pending)
    return found


def _wanted_integrations(
    grant: UserGrant, known: list[Integration] | None
) -> tuple[Integration, ...]:
    if grant.integrations:
        return grant.integrations
    return tuple(known) if known else ALL_INTEGRATIONS


def _existing_integrations(conn, ids: Sequence[str]) -> dict[str, list[Integration]]:
    found: dict[str, list[Integration]] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for (user_id,) in conn.execute(f"SELECT id FROM users WHERE id IN ({marks})", chunk):
            found[user_id] = []
        query = "SELECT user_id, integration_type FROM user_integrations WHERE user_id IN "
        for user_id, kind in conn.execute(f"{query}({marks})", chunk):
            found[user_id].append(Integration(kind))
    return found


def _users_with_same_grant(conn, grants: Sequence[UserGrant], keyring: Keyring) -> set[str]:
    incoming = {g.user_id: (g.credentials.client_id, g.credentials.refresh_token) for g in grants}
    same: set[str] = set()
    for chunk in _chunks(list(incoming)):
        marks = ",".join("?" * len(chunk))
        query = "SELECT user_id, client_id, refresh_token FROM credentials WHERE user_id IN "
        for user_id, client_id, refresh_token in conn.execute(f"{query}({marks})", chunk):
            if incoming[user_id] == (client_id, keyring.decrypt(refresh_token)):
                same.add(user_id)
    return same


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _credential_row(grant: UserGrant, stamp: str, keyring: Keyring) -> tuple:
    creds = grant.credentials
    return (
        grant.user_id,
        creds.client_id,
        keyring.encrypt(creds.client_secret),
        keyring.encrypt(creds.refresh_token),
        creds.access_token and keyring.encrypt(creds.access_token),
        creds.token_expiry,
        json.dumps(list(creds.scopes)),
        stamp,
    )


def user_exists(conn: sqlite3.Connection, user_id: str) -> bool:
    """Whether a user with this id is known."""
    return conn.execute("SELECT 1 FROM users WHERE id = ?", [user_id]).fetchone() is not None


def list_users(conn: sqlite3.Connection) -> list[dict]:
    """Every user with email, creation time and integrations (CLI spellings), by id."""
    rows = conn.execute(
        "SELECT u.id, u.email, u.created_at, group_concat(i.integration_type)"
        " FROM users u LEFT JOIN user_integrations i ON i.user_id = u.id"
        " GROUP BY u.id ORDER BY u.id"
    ).fetchall()
    return [
        {
            "id": user_id,
            "email": email,
            "created_at": created_at,
            "integrations": sorted(shown_integration(k) for k in (kinds or "").split(",") if k),
        }
        for user_id, email, created_at, kinds in rows
    ]


def user_integrations(conn: sqlite3.Connection, user_id: str) -> tuple[Integration, ...]:
    """The integrations enabled for a user, contacts first."""
    rows = conn.execute(
        "SELECT integration_type FROM user_integrations WHERE user_id = ?", [user_id]
    ).fetchall()
    return integrations_of(kind for (kind,) in rows)


def integrations_of(stored: Iterable[str]) -> tuple[Integration, ...]:
    """The integrations of stored integration_type values (empty strings skipped), contacts
    first."""
    kinds = {Integration(kind) for kind in stored if kind}
    return tuple(i for i in ALL_INTEGRATIONS if i in kinds)


def load_credentials(conn: sqlite3.Connection, user_id: str) -> UserCredentials | None:
    """The stored grant of a user, or None for an unknown user: the access token decrypted, the
    client secret and refresh token when first read (UserCredentials)."""
    row = conn.execute(
        "SELECT client_id, client_secret, refresh_token, access_token, token_expiry, scopes,"
        f" {secret_store.ENCRYPTED_SQL} FROM credentials WHERE user_id = ?",
        [user_id],
    ).fetchone()
    if row is None:
        return None
    client_id, client_secret, refresh_token, access_token, token_expiry, scopes, encrypted = row
    keyring = secret_store.reading_keyring(conn, encrypted=bool(encrypted))
    grant = UserCredentials(
        client_id=client_id,
        client_secret=client_secret,  # opened by a token refresh, the one reader of either
        refresh_token=refresh_token,
        access_token=access_token and keyring.decrypt(access_token),
        token_expiry=token_expiry,
        scopes=tuple(json.loads(scopes)),
        opener=keyring.decrypt,
    )
    if access_token is None:  # a refresh comes first: a key that cannot open them fails here
        grant.open()
    return grant


def save_access_token(
    conn: sqlite3.Connection,
    user_id: str,
    access_token: str | None,
    token_expiry: str | None,
    *,
    rotated_refresh_token: str | None = None,
) -> None:
    """Remember a refreshed access token, and a refresh token Google rotated (in the caller's
    transaction), encrypted with the database's key."""
    keyring = secret_store.writing_keyring(conn)
    conn.execute(
        "UPDATE credentials SET access_token = ?, token_expiry = ?,"
        " refresh_token = coalesce(?, refresh_token) WHERE user_id = ?",
        [
            access_token and keyring.encrypt(access_token),
            token_expiry,
            rotated_refresh_token and keyring.encrypt(rotated_refresh_token),
            user_id,
        ],
    )


def remove_user(conn: sqlite3.Connection, user_id: str, *, purge: bool) -> None:
    """Forget a user and its state (inside the caller's transaction); with purge, delete its
    synced data too."""
    tables = ["credentials", "user_integrations", *PAIR_STATE_TABLES, "notifications"]
    if purge:
        tables += [*USER_DATA_TABLES, "webhook_channels"]
    for table in tables:
        conn.execute(f"DELETE FROM {table} WHERE user_id = ?", [user_id])
    conn.execute("DELETE FROM users WHERE id = ?", [user_id])
