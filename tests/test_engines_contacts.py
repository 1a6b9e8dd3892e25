"""The contacts engine against the fake Google over HTTP: full, incremental, fallbacks, counts."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import session_for

from syncctl.clock import utcnow
from syncctl.engines import SyncOutcome
from syncctl.engines.contacts import contact_row, group_row, sync_contacts
from syncctl.fakegoogle import FakeGoogle
from syncctl.google import TransientError
from syncctl.model import Integration, SyncType
from syncctl.store import open_database
from syncctl.store.contacts import load_contacts, load_groups
from syncctl.store.sync_tokens import load_sync_token

USER = "alice"


@pytest.fixture
def account(fake_google):
    """A user with 40 contacts in 3 groups at the fake; returns its credentials."""
    return fake_google.add_user(USER, contacts=40, groups=3)


def sync(fake: FakeGoogle, db, info: dict[str, Any], *, full: bool = False) -> SyncOutcome:
    with session_for(fake, info) as session:
        return sync_contacts(db, session, USER, full=full, now=utcnow)


def assert_mirror_is_exact(fake: FakeGoogle, db) -> None:
    """The database holds exactly the fake's contacts and groups, field for field."""
    truth = {name: contact_row(person) for name, person in fake.contacts(USER).items()}
    assert load_contacts(db.conn, USER) == truth
    groups = {name: group_row(group) for name, group in fake.groups(USER).items()}
    # memberCount is only as fresh as a group's own last change (see the engine docstring).
    assert {k: g._replace(member_count=None) for k, g in load_groups(db.conn, USER).items()} == {
        k: g._replace(member_count=None) for k, g in groups.items()
    }


def test_first_sync_is_full_and_mirrors_a_2500_contact_account(fake_google, db):
    info = fake_google.add_user(USER, contacts=2500, groups=4)

    outcome = sync(fake_google, db, info)

    assert outcome.sync_type is SyncType.FULL
    assert not outcome.full_resync
    groups = len(fake_google.groups(USER))
    assert (outcome.added, outcome.updated, outcome.deleted) == (2500 + groups, 0, 0)
    assert outcome.items_processed == 2500 + groups
    # one token refresh, three pages of 1000 people, one page of groups
    assert outcome.api_calls_made == 5
    assert fake_google.request_count(USER, "people.connections.list") == 3
    assert_mirror_is_exact(fake_google, db)
    for scope in ("connections", "contact_groups"):
        assert load_sync_token(db.conn, USER, Integration.CONTACTS, scope)


def test_second_sync_is_incremental_and_reports_no_change(fake_google, db, account):
    sync(fake_google, db, account)

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.INCREMENTAL
    assert (outcome.items_processed, outcome.added, outcome.updated, outcome.deleted) == (
        0,
        0,
        0,
        0,
    )
    assert not outcome.changed
    assert_mirror_is_exact(fake_google, db)


def test_incremental_sync_applies_additions_changes_and_deletions_with_exact_counts(
    fake_google, db, account
):
    sync(fake_google, db, account)
    people = sorted(fake_google.contacts(USER))
    for i in range(3):
        fake_google.add_contact(USER, name=f"New Person{i}", email=f"new{i}@example.com")
    fake_google.update_contact(USER, people[0], phone="+1 555-0100")
    fake_google.update_contact(USER, people[1], name="Renamed Person")
    fake_google.delete_contact(USER, people[2])

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.INCREMENTAL
    assert (outcome.added, outcome.updated, outcome.deleted) == (3, 2, 1)
    assert outcome.items_processed == 6
    assert outcome.changed
    assert load_contacts(db.conn, USER)[people[1]].display_name == "Renamed Person"
    assert_mirror_is_exact(fake_google, db)


def test_a_relinked_contact_replaces_its_old_row_without_a_duplicate(fake_google, db, account):
    sync(fake_google, db, account)
    old_name = sorted(fake_google.contacts(USER))[0]
    new_name = fake_google.relink_contact(USER, old_name)

    outcome = sync(fake_google, db, account)

    assert (outcome.added, outcome.updated, outcome.deleted) == (0, 1, 0)
    stored = load_contacts(db.conn, USER)
    assert old_name not in stored and new_name in stored
    assert len(stored) == 40
    assert_mirror_is_exact(fake_google, db)


def test_expired_sync_token_falls_back_to_a_full_sync_holding_exactly_googles_data(
    fake_google, db, account
):
    sync(fake_google, db, account)
    people = sorted(fake_google.contacts(USER))
    fake_google.delete_contact(USER, people[0])
    fake_google.relink_contact(USER, people[1])  # a full listing carries no previous names
    fake_google.add_contact(USER, name="Late Arrival")
    fake_google.expire_sync_tokens(USER)

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.FULL
    assert outcome.full_resync
    assert (outcome.added, outcome.updated, outcome.deleted) == (2, 0, 2)
    assert_mirror_is_exact(fake_google, db)
    assert sync(fake_google, db, account).sync_type is SyncType.INCREMENTAL


def test_full_resync_without_a_stored_token_removes_rows_google_no_longer_has(
    fake_google, db, account
):
    sync(fake_google, db, account)
    db.conn.execute("DELETE FROM sync_tokens")  # the token was lost
    gone = sorted(fake_google.contacts(USER))[0]
    fake_google.delete_contact(USER, gone)

    outcome = sync(fake_google, db, account)

    assert outcome.sync_type is SyncType.FULL
    assert not outcome.full_resync
    # the person is deleted; the full group listing brings My Contacts' new memberCount
    assert (outcome.added, outcome.updated, outcome.deleted) == (0, 1, 1)
    assert gone not in load_contacts(db.conn, USER)
    assert_mirror_is_exact(fake_google, db)


def test_full_flag_replaces_the_mirror_even_with_a_valid_token(fake_google, db, account):
    sync(fake_google, db, account)
    db.conn.execute(
        "INSERT INTO contacts (user_id, resource_name, etag) VALUES (?, 'people/stray', 'x')",
        [USER],
    )
    db.conn.execute(
        "UPDATE contacts SET display_name = 'drifted' WHERE resource_name = ?",
        [sorted(fake_google.contacts(USER))[0]],
    )

    outcome = sync(fake_google, db, account, full=True)

    assert outcome.sync_type is SyncType.FULL
    assert not outcome.full_resync
    assert (outcome.added, outcome.updated, outcome.deleted) == (0, 1, 1)
    assert_mirror_is_exact(fake_google, db)


def test_contact_groups_sync_incrementally_after_contacts(fake_google, db, account):
    sync(fake_google, db, account)
    groups = [g for g, body in fake_google.groups(USER).items() if "USER" in body["groupType"]]
    new_group = fake_google.add_group(USER, name="Climbing")
    fake_google.update_group(USER, groups[0], name="Renamed group")
    before = fake_google.request_count(USER, "people.contactGroups.list")

    outcome = sync(fake_google, db, account)

    assert (outcome.added, outcome.updated, outcome.deleted) == (1, 1, 0)
    assert fake_google.request_count(USER, "people.contactGroups.list") == before + 1
    assert new_group in load_groups(db.conn, USER)
    assert_mirror_is_exact(fake_google, db)


def test_a_deleted_group_is_removed_and_its_members_updated(fake_google, db, account):
    sync(fake_google, db, account)
    group = next(g for g, body in fake_google.groups(USER).items() if "USER" in body["groupType"])
    members = sum(
        1
        for person in fake_google.contacts(USER).values()
        if any(
            m["contactGroupMembership"]["contactGroupResourceName"] == group
            for m in person["memberships"]
        )
    )
    fake_google.delete_group(USER, group)

    outcome = sync(fake_google, db, account)

    assert (outcome.added, outcome.updated, outcome.deleted) == (0, members, 1)
    assert group not in load_groups(db.conn, USER)
    assert_mirror_is_exact(fake_google, db)


def test_groups_are_not_synced_when_the_contact_sync_fails(fake_google, db, account):
    fake_google.fail_next(503, count=2, user_id=USER, endpoint="people.connections.list")

    with pytest.raises(TransientError), session_for(fake_google, account) as session:
        sync_contacts(db, session, USER, now=utcnow)

    assert fake_google.request_count(USER, "people.contactGroups.list") == 0
    assert load_contacts(db.conn, USER) == {}
    assert load_sync_token(db.conn, USER, Integration.CONTACTS, "connections") is None


def test_two_overlapping_full_syncs_leave_exactly_googles_data(fake_google, tmp_path):
    # GIVEN a mirrored account whose data changed since
    info = fake_google.add_user(USER, contacts=4000)
    path = tmp_path / "syncctl.db"
    db = open_database(path)
    sync(fake_google, db, info)
    people = list(fake_google.contacts(USER))
    for name in (people[3], people[1200], people[3900]):
        fake_google.delete_contact(USER, name)
    fake_google.add_contact(USER, name="Someone New")
    fake_google.set_latency(0.05)
    errors: list[BaseException] = []

    def resync() -> None:
        own = open_database(path)  # one connection per thread, as the orchestrator has
        try:
            sync(fake_google, own, info, full=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            own.close()

    # WHEN a second full resync starts once the first has committed its first page
    first, second = threading.Thread(target=resync), threading.Thread(target=resync)
    first.start()
    marked = "SELECT count(*) FROM contacts WHERE sync_generation = 2"
    while db.conn.execute(marked).fetchone()[0] == 0 and first.is_alive():
        time.sleep(0.001)
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)

    # THEN neither swept the other's rows, and nothing Google deleted survived
    assert errors == []
    assert db.conn.execute("SELECT max(sync_generation) FROM contacts").fetchone()[0] == 3
    fake_google.set_latency(0)
    assert_mirror_is_exact(fake_google, db)
    db.close()
