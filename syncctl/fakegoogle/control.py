"""The small `/_fake/...` HTTP control surface for people driving `syncctl fake-google serve`."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from syncctl.fakegoogle.errors import Reply

if TYPE_CHECKING:
    from syncctl.fakegoogle.fake import FakeGoogle

USER_OPTIONS = ("contacts", "groups", "calendars", "events_per_calendar", "scopes")


def control(fake: FakeGoogle, method: str, target: str, body: bytes) -> Reply:
    """Serve one control request; nothing here is counted as a Google request."""
    path = urlsplit(target).path
    segments = [unquote(part) for part in path.split("/")[2:] if part]
    try:
        data = json.loads(body) if body else {}
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return _serve(fake, method, segments, data)
    except (ValueError, TypeError) as exc:
        return Reply(400, {"error": str(exc)})


def _serve(fake: FakeGoogle, method: str, segments: list[str], data: dict[str, Any]) -> Reply:
    if method == "GET" and segments == ["counts"]:
        return Reply(200, counts_document(fake))
    if method == "GET" and segments == ["client-secrets"]:
        return Reply(200, fake.client_secrets())
    if method == "POST" and segments == ["consent"]:
        unknown = sorted(set(data) - {"user", "deny", "scopes", "refresh_token"})
        if unknown:
            raise ValueError(f"unknown consent option {unknown[0]!r}")
        scopes = data.get("scopes")
        if scopes is not None and not (
            isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)
        ):
            raise ValueError('"scopes" must be a list of strings')
        if data.get("user") is not None and not isinstance(data["user"], str):
            raise ValueError('"user" must be a string')
        fake.set_consent(
            data.get("user"),
            deny=bool(data.get("deny", False)),
            scopes=data.get("scopes"),
            refresh_token=bool(data.get("refresh_token", True)),
        )
        return Reply(200, {"consent": data})
    if method == "POST" and segments == ["users"]:
        user_id = data.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError('"id" (a string) is required')
        options = {name: data[name] for name in USER_OPTIONS if name in data}
        return Reply(201, fake.add_user(user_id, **options))
    if method == "POST" and len(segments) == 3 and segments[0] == "users":
        user_id, action = segments[1], segments[2]
        if action == "revoke":
            fake.revoke(user_id)
            return Reply(200, {"revoked": user_id})
        if action == "reconnect":
            return Reply(200, fake.reconnect(user_id))
        if action == "changes":
            count = int(data.get("count", 5))
            return Reply(200, {"changes": fake.random_changes(user_id, count)})
    return Reply(404, {"error": f"no control endpoint {method} /_fake/{'/'.join(segments)}"})


def counts_document(fake: FakeGoogle) -> dict[str, Any]:
    """Request counts as JSON: total, by endpoint, and by user (`-` for unattributed)."""
    by_endpoint: dict[str, int] = defaultdict(int)
    by_user: dict[str, dict[str, int]] = defaultdict(dict)
    for (user_id, endpoint), count in sorted(
        fake.counts().items(), key=lambda item: (item[0][0] or "", item[0][1])
    ):
        by_endpoint[endpoint] += count
        by_user[user_id or "-"][endpoint] = count
    return {
        "total": sum(by_endpoint.values()),
        "by_endpoint": dict(by_endpoint),
        "by_user": dict(by_user),
    }
