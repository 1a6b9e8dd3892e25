"""People API v1: `people.connections.list` and `contactGroups.list`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from syncctl.fakegoogle import errors
from syncctl.fakegoogle.errors import Reply
from syncctl.fakegoogle.listing import Listing, page, page_size
from syncctl.fakegoogle.records import UserState
from syncctl.fakegoogle.render import (
    DEFAULT_GROUP_FIELDS,
    GROUP_FIELDS,
    PERSON_FIELDS,
    render_group,
    render_person,
)
from syncctl.fakegoogle.state import CONTACTS_SCOPES, ApiRequest, FakeState

SORT_ORDERS = (
    "LAST_MODIFIED_ASCENDING",
    "LAST_MODIFIED_DESCENDING",
    "FIRST_NAME_ASCENDING",
    "LAST_NAME_ASCENDING",
)
FIELDS_HELP = (
    "Valid paths are documented at https://developers.google.com/people/api/rest/v1/people/get."
)


def _bad_page_token() -> errors.ApiError:
    return errors.people_bad_request("Page token is not valid for this request.")


def _person_fields(request: ApiRequest) -> frozenset[str]:
    text = request.param("personFields") or request.param("requestMask.includeField")
    if text is None:
        raise errors.people_bad_request(
            "personFields mask is required. Please specify one or more valid paths. " + FIELDS_HELP
        )
    fields = frozenset(part.strip().removeprefix("person.") for part in text.split(","))
    unknown = sorted(fields - PERSON_FIELDS)
    if unknown:
        raise errors.people_bad_request(
            f'Invalid personFields mask path: "{unknown[0]}". {FIELDS_HELP}'
        )
    return fields


def _people_keys(user: UserState, sort_order: str) -> list[str]:
    records = user.people.live_records()
    if sort_order == "LAST_MODIFIED_DESCENDING":
        records.reverse()
    elif sort_order == "FIRST_NAME_ASCENDING":
        records.sort(key=lambda person: (person.given_name.lower(), person.resource_name))
    elif sort_order == "LAST_NAME_ASCENDING":
        records.sort(key=lambda person: (person.family_name.lower(), person.resource_name))
    return [person.resource_name for person in records]


def list_connections(state: FakeState, request: ApiRequest) -> Reply:
    """GET /v1/people/me/connections."""
    if request.segments[2] != "me":
        raise errors.rpc_error(403, "The caller does not have permission")
    with state.lock:
        user = state.authenticate(
            request, "people", CONTACTS_SCOPES, "google.people.v1.PeopleService.ListConnections"
        )
        fields = _person_fields(request)
        size = page_size(
            request,
            "pageSize",
            default=100,
            maximum=1000,
            clamp=False,
            error=errors.people_bad_request,
        )
        sort_order = request.param("sortOrder") or "LAST_MODIFIED_ASCENDING"
        if sort_order not in SORT_ORDERS:
            raise errors.people_bad_request(f"Invalid value at 'sort_order' (\"{sort_order}\")")
        listing = Listing(
            scope="people",
            full_keys=lambda: _people_keys(user, sort_order),
            changed_since=user.people.changed_since,
            expired=errors.expired_people_sync_token,
            bad_page_token=_bad_page_token,
            signature=(",".join(sorted(fields)), sort_order),
        )
        result = page(state, request, user, listing, size)
        connections = []
        for key in result.keys:
            person = user.people.get(key)
            if person is None or (person.deleted and not result.incremental):
                continue
            connections.append(render_person(person, fields, sync=result.incremental))
        body: dict[str, Any] = {}
        if connections:
            body["connections"] = connections
        if result.next_page_token:
            body["nextPageToken"] = result.next_page_token
        elif request.flag("requestSyncToken"):
            body["nextSyncToken"] = state.sync_tokens.issue(
                user.user_id, "people", result.start_seq, state.now()
            )
        body["totalPeople"] = result.total
        body["totalItems"] = result.total
    return Reply(200, body)


def _group_fields(request: ApiRequest) -> frozenset[str]:
    text = request.param("groupFields")
    if text is None:
        return DEFAULT_GROUP_FIELDS
    fields = frozenset(part.strip() for part in text.split(","))
    unknown = sorted(fields - GROUP_FIELDS)
    if unknown:
        raise errors.people_bad_request(f'Invalid groupFields mask path: "{unknown[0]}".')
    return fields


def _member_counts(user: UserState) -> Counter[str]:
    counts: Counter[str] = Counter()
    for person in user.people.live_records():
        counts["contactGroups/myContacts"] += 1
        counts.update(person.groups)
    return counts


def list_contact_groups(state: FakeState, request: ApiRequest) -> Reply:
    """GET /v1/contactGroups (no requestSyncToken: the last page always has nextSyncToken)."""
    with state.lock:
        user = state.authenticate(
            request,
            "people",
            CONTACTS_SCOPES,
            "google.people.v1.ContactGroupService.ListContactGroups",
        )
        fields = _group_fields(request)
        size = page_size(
            request,
            "pageSize",
            default=30,
            maximum=1000,
            clamp=False,
            error=errors.people_bad_request,
        )
        listing = Listing(
            scope="groups",
            full_keys=user.groups.live_keys,
            changed_since=user.groups.changed_since,
            expired=errors.expired_people_sync_token,
            bad_page_token=_bad_page_token,
            signature=(",".join(sorted(fields)),),
        )
        result = page(state, request, user, listing, size)
        counts = _member_counts(user) if "memberCount" in fields and result.keys else Counter()
        groups = []
        for key in result.keys:
            group = user.groups.get(key)
            if group is None or (group.deleted and not result.incremental):
                continue
            groups.append(render_group(group, fields, counts[group.resource_name]))
        body: dict[str, Any] = {}
        if groups:
            body["contactGroups"] = groups
        if result.next_page_token:
            body["nextPageToken"] = result.next_page_token
        else:
            body["nextSyncToken"] = state.sync_tokens.issue(
                user.user_id, "groups", result.start_seq, state.now()
            )
        body["totalItems"] = result.total
    return Reply(200, body)
