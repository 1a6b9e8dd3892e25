"""Adding, importing, listing and removing users: validation in front of the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from syncctl.clock import Clock, from_iso, to_iso
from syncctl.config import Settings
from syncctl.model import (
    ALL_INTEGRATIONS,
    Integration,
    ScheduleRecord,
    UserCredentials,
    parse_integrations,
)
from syncctl.policy import breaker as breaker_policy
from syncctl.policy import schedule as schedule_policy
from syncctl.policy import token_health
from syncctl.policy.gate import gate
from syncctl.store import channels as channel_store
from syncctl.store import state as state_store
from syncctl.store import transaction
from syncctl.store import users as user_store

IMPORT_BATCH = 5000
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
REQUIRED_CREDENTIAL_FIELDS = ("client_id", "client_secret", "refresh_token")


class BadInput(ValueError):
    """Input from the command line or a file that syncctl refuses (exit code 2)."""


class UnknownUser(BadInput):
    """No user with that id is known."""


@dataclass
class ImportReport:
    """What `user import` did: how many lines were imported, new, and which lines were bad."""

    imported: int = 0
    new: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


def parse_credentials(info: Any) -> UserCredentials:
    """Validate Google's authorized-user JSON; BadInput names what is wrong (never a value)."""
    if not isinstance(info, dict):
        raise BadInput("credentials must be a JSON object (Google's authorized-user JSON)")
    kind = info.get("type", "authorized_user")
    if kind != "authorized_user":
        raise BadInput(f"credentials have type {kind!r}; expected 'authorized_user'")
    for name in REQUIRED_CREDENTIAL_FIELDS:
        value = info.get(name)
        if not isinstance(value, str) or not value.strip():
            raise BadInput(f"credentials field {name!r} is missing or empty")
    token = info.get("token")
    if token is not None and not isinstance(token, str):
        raise BadInput("credentials field 'token' must be a string")
    return UserCredentials(
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        refresh_token=info["refresh_token"],
        access_token=token or None,
        token_expiry=_parse_expiry(info.get("expiry")) if token else None,
        scopes=_parse_scopes(info.get("scopes")),
    )


def _parse_expiry(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput("credentials field 'expiry' must be an ISO-8601 string")
    try:
        return to_iso(from_iso(value.replace("Z", "+00:00")))
    except ValueError as exc:
        raise BadInput("credentials field 'expiry' is not an ISO-8601 time") from exc


def _parse_scopes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise BadInput("credentials field 'scopes' must be a list or a space-separated string")


def integrations_option(text: str) -> tuple[Integration, ...]:
    """Parse an `--integration(s)` value (contacts, calendar, all); unknown names are BadInput."""
    try:
        return parse_integrations(text)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc


def _read_json_file(path: Path, what: str) -> Any:
    """The JSON in `path`, or BadInput naming `what` and what is wrong with it."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise BadInput(f"{what} {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{what} {path} cannot be read") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} {path} is not JSON (line {exc.lineno})") from exc


def read_credentials_file(path: Path) -> UserCredentials:
    """Read and validate an authorized-user JSON file."""
    info = _read_json_file(path, "credentials file")
    try:
        return parse_credentials(info)
    except BadInput as exc:
        raise BadInput(f"{path}: {exc}") from exc


def read_client_secrets(path: Path) -> dict[str, Any]:
    """Read the OAuth client JSON Google's console downloads (`installed` or `web`)."""
    info = _read_json_file(path, "client secrets file")
    kind = next((k for k in ("installed", "web") if isinstance(info, dict) and k in info), None)
    if kind is None or not isinstance(info[kind], dict):
        raise BadInput(
            f"{path}: not an OAuth client JSON (expected an 'installed' or 'web' object)"
        )
    section = dict(info[kind])
    for name in ("client_id", "client_secret"):
        value = section.get(name)
        if not isinstance(value, str) or not value.strip():
            raise BadInput(f"{path}: client field {name!r} is missing or empty")
    for name, default in (("auth_uri", GOOGLE_AUTH_URI), ("token_uri", GOOGLE_TOKEN_URI)):
        if not isinstance(section.get(name), str) or not section[name].startswith("https://"):
            section[name] = default
    return {kind: section}


def connect_user(
    db: sqlite_utils.Database,
    settings: Settings,
    user_id: str,
    client_config: dict[str, Any],
    *,
    announce: Callable[[str], None],
    clock: Clock,
    integrations: tuple[Integration, ...] | None = None,
    email: str | None = None,
    port: int = 0,
    open_browser: bool = True,
) -> bool:
    """Run Google's consent for one account and store the grant as `add_user` does (a
    reconnect for a known user); True when the user is new. An incomplete grant is BadInput;
    a denied or failed consent is ConsentError; either way nothing is stored."""
    from syncctl.google import consent  # the OAuth flow loads only when needed

    check_user_id(user_id)
    chosen = integrations or (user_store.user_integrations(db.conn, user_id) or ALL_INTEGRATIONS)
    try:
        grant = consent.run_consent(
            client_config,
            chosen,
            settings,
            user_id=user_id,
            port=port,
            open_browser=open_browser,
            login_hint=email,
            announce=announce,
        )
    except (consent.IncompleteGrant, consent.ListenError) as exc:
        raise BadInput(str(exc)) from exc
    return add_user(
        db, settings, user_id, grant, now=clock(), integrations=integrations, email=email
    )


def check_user_id(user_id: Any) -> str:
    """A user id is a non-empty string of printable characters without whitespace."""
    if not isinstance(user_id, str) or not user_id or len(user_id) > 256:
        raise BadInput("user id must be a non-empty string of at most 256 characters")
    if any(ch.isspace() or not ch.isprintable() for ch in user_id):
        raise BadInput(f"user id {user_id!r} must not contain spaces or control characters")
    return user_id


def _reconnect(settings: Settings, now: datetime) -> user_store.Reconnect:
    """A reconnect resets token health and the breaker and makes the pair due now."""

    def schedule(integration: Integration, record: ScheduleRecord | None) -> ScheduleRecord:
        return schedule_policy.on_reconnect(record, integration, now, settings)

    return user_store.Reconnect(
        token_status=token_health.status_after_reconnect(),
        breaker=breaker_policy.reset(),
        schedule=schedule,
    )


def add_user(
    db: sqlite_utils.Database,
    settings: Settings,
    user_id: str,
    credentials: UserCredentials,
    *,
    now: datetime,
    integrations: tuple[Integration, ...] | None = None,
    email: str | None = None,
) -> bool:
    """Add a user, or reconnect a known one; True when the user is new."""
    grant = user_store.UserGrant(check_user_id(user_id), credentials, email, integrations)
    return save_grants(db, settings, [grant], now=now) == 1


def save_grants(
    db: sqlite_utils.Database,
    settings: Settings,
    grants: list[user_store.UserGrant],
    *,
    now: datetime,
    reconnect_unchanged: bool = True,
) -> int:
    """Add or reconnect users in one transaction (see store.users.save_users); how many are new."""
    with transaction(db) as tx:
        return user_store.save_users(
            tx,
            grants,
            now=now,
            reconnect=_reconnect(settings, now),
            reconnect_unchanged=reconnect_unchanged,
        )


def _grant_from_line(text: str) -> user_store.UserGrant:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"not JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise BadInput("not a JSON object")
    user_id = check_user_id(record.get("id"))
    email = record.get("email")
    if email is not None and not isinstance(email, str):
        raise BadInput("'email' must be a string")
    integrations = record.get("integrations")
    if integrations is not None:
        if isinstance(integrations, list) and all(isinstance(i, str) for i in integrations):
            integrations = ",".join(integrations)
        if not isinstance(integrations, str):
            raise BadInput("'integrations' must be a list or a comma-separated string")
        try:
            integrations = parse_integrations(integrations)
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
    if "credentials" not in record:
        raise BadInput("missing 'credentials'")
    return user_store.UserGrant(
        user_id, parse_credentials(record["credentials"]), email, integrations
    )


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except FileNotFoundError as exc:
        raise BadInput(f"import file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"import file {path} cannot be read") from exc


def import_users(
    db: sqlite_utils.Database | Callable[[], sqlite_utils.Database],
    settings: Settings,
    path: Path,
    *,
    now: datetime,
) -> ImportReport:
    """Import JSON Lines users all-or-nothing: any bad line is reported and nothing is written.

    `db` may be a function that opens the database, so a refused file creates none.
    """
    report = ImportReport()
    for number, line in _numbered_lines(path):
        try:
            _grant_from_line(line)
        except BadInput as exc:
            report.bad_lines.append((number, str(exc)))
    if report.bad_lines:
        return report
    if not isinstance(db, sqlite_utils.Database):
        db = db()
    for batch in _batches((_grant_from_line(line) for _, line in _numbered_lines(path))):
        report.new += save_grants(db, settings, batch, now=now, reconnect_unchanged=False)
        report.imported += len(batch)
    return report


def _batches(grants: Iterable[user_store.UserGrant]) -> Iterator[list[user_store.UserGrant]]:
    batch: list[user_store.UserGrant] = []
    for grant in grants:
        batch.append(grant)
        if len(batch) == IMPORT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def remove_user(
    db: sqlite_utils.Database, settings: Settings, user_id: str, *, purge: bool, now: datetime
) -> list[str]:
    """Stop the user's watch channels (at Google unless the grant is revoked), then forget the
    user; returns the problems met while stopping channels, which never block the removal."""
    from syncctl.engines.channels import stop_user_channels
    from syncctl.google.session import GoogleSession  # the Google stack loads only when needed

    require_user(db, user_id)
    credentials = user_store.load_credentials(db.conn, user_id)
    if credentials is not None and _may_stop_at_google(db, settings, user_id, now):
        with GoogleSession(credentials, settings) as session:
            report = stop_user_channels(db, session, user_id, now)
    else:
        report = stop_user_channels(db, None, user_id, now)
    with transaction(db) as tx:
        user_store.remove_user(tx, user_id, purge=purge)
    return report.errors


def _may_stop_at_google(
    db: sqlite_utils.Database, settings: Settings, user_id: str, now: datetime
) -> bool:
    """Channels are stopped at Google only when the calendar pair's gate allows a call."""
    if not channel_store.open_channels(db.conn, user_id):
        return False
    calendar = Integration.CALENDAR
    status = state_store.load_token_status(db.conn, user_id, calendar)
    breaker = state_store.load_breaker(db.conn, user_id, calendar)
    return gate(status, breaker, now, settings).allowed


def require_user(db: sqlite_utils.Database, user_id: str) -> str:
    """Return user_id if known, else raise UnknownUser."""
    if not user_store.user_exists(db.conn, user_id):
        raise UnknownUser(f"unknown user {user_id!r} (see `syncctl user list`)")
    return user_id
