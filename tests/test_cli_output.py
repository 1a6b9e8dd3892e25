"""The run-due lines for cron (SPEC 1 "Under cron"), from attempt records alone."""

from __future__ import annotations

from syncctl.cli._output import run_due_problems, shown_cell
from syncctl.model import ErrorClass, Integration, Result, SkipReason, Trigger
from syncctl.store.metrics import AttemptRecord

AT = "2026-03-10T12:00:00+00:00"
REVOKED = "the Google grant has been revoked or has expired (invalid_grant)"


def attempt(user: str, integration: Integration, result: Result, **fields) -> AttemptRecord:
    return AttemptRecord(user, integration, Trigger.SCHEDULED, result, AT, **fields)


def ok(user: str) -> AttemptRecord:
    return attempt(user, Integration.CALENDAR, Result.SUCCESS)


def gated(user: str, reason: SkipReason) -> AttemptRecord:
    return attempt(user, Integration.CALENDAR, Result.SKIPPED, skip_reason=reason)


def found_revoked(user: str, integration: Integration) -> AttemptRecord:
    return attempt(
        user, integration, Result.SKIPPED, skip_reason=SkipReason.INVALID_TOKEN,
        error_class=ErrorClass.AUTH, error_message=REVOKED,
    )  # fmt: skip


def test_nothing_to_say_when_nothing_ran_all_succeeded_or_gates_held_known_causes():
    assert run_due_problems([]) == []
    assert run_due_problems([ok("ann"), ok("bob")]) == []
    known = [gated("ann", SkipReason.INVALID_TOKEN), gated("bob", SkipReason.CIRCUIT_OPEN)]
    assert run_due_problems([ok("cy"), *known]) == []


def test_a_failure_is_one_summary_line_and_one_line_with_the_cli_name_and_error():
    failed = attempt(
        "cy", Integration.CONTACTS, Result.FAILURE, error_class=ErrorClass.TRANSIENT,
        error_message="People API HTTP 503: unavailable",
    )  # fmt: skip
    assert run_due_problems([ok("ann"), gated("bob", SkipReason.CIRCUIT_OPEN), failed]) == [
        "syncctl run-due: 3 attempts, 1 succeeded, 1 failed, 1 skipped",
        "failed: cy contacts: People API HTTP 503: unavailable",
    ]


def test_a_grant_found_revoked_by_two_pairs_is_one_line():
    records = [
        found_revoked("ann", Integration.CALENDAR),
        found_revoked("ann", Integration.CONTACTS),
    ]
    assert run_due_problems(records) == [
        "syncctl run-due: 2 attempts, 0 succeeded, 0 failed, 2 skipped; 1 grant(s) newly revoked",
        f"revoked: ann: {REVOKED} (run `syncctl user add ann --credentials FILE`)",
    ]


def test_a_table_cell_shows_a_stored_utc_time_compactly_and_anything_else_as_it_is():
    cases = [
        (None, "-"),
        ("2026-12-02T19:36:25+00:00", "2026-12-02 19:36:25Z"),
        ("2026-12-02T19:36:25+02:00", "2026-12-02T19:36:25+02:00"),  # not how we store: as is
        ("not a time", "not a time"),
        ("x 2026-12-02T19:36:25+00:00", "x 2026-12-02T19:36:25+00:00"),
        (42, "42"),
    ]
    for cell, shown in cases:
        assert shown_cell(cell) == shown, cell
