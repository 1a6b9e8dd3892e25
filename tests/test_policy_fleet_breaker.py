"""The fleet breaker per API (SPEC 3.2, rev 2): trip on a window of mostly failing attempts,
hold the rest of the run, probe once per later run until a probe succeeds."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import Settings
from syncctl.model import BreakerState, Integration
from syncctl.policy.fleet_breaker import (
    Api,
    Evidence,
    FleetGate,
    FleetRecord,
    apis_needed,
    closed,
    evidence_of,
    gate,
    looks_like_an_outage,
    observe,
    on_probe,
    probe_due,
    trips,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
CAL = Integration.CALENDAR
CON = Integration.CONTACTS
FAIL = Evidence(Api.CALENDAR, True, "transient: HTTP 503")
OK = Evidence(Api.CALENDAR, False)


@pytest.mark.parametrize(
    ("attempts", "failures", "expected"),
    [
        pytest.param(19, 19, False, id="19-all-failing-too-few"),
        pytest.param(20, 18, True, id="20-with-90pct"),
        pytest.param(20, 17, False, id="20-with-85pct"),
        pytest.param(100, 90, True, id="100-with-90pct"),
        pytest.param(100, 89, False, id="100-with-89pct"),
        pytest.param(0, 0, False, id="nothing"),
    ],
)
def test_trips_at_20_attempts_and_90_percent_transient(
    attempts: int, failures: int, expected: bool
) -> None:
    assert trips(attempts, failures, SETTINGS) is expected


def _observed(record: FleetRecord, evidence: list[Evidence], at: datetime) -> FleetRecord:
    for item in evidence:
        record = observe(record, item, at, SETTINGS)
    return record


def test_the_20th_failing_attempt_of_a_window_opens_the_breaker() -> None:
    record = _observed(FleetRecord(Api.CALENDAR), [FAIL] * 19, NOW)
    assert (record.state, record.attempts, record.transient_failures) == (
        BreakerState.CLOSED,
        19,
        19,
    )
    record = observe(record, FAIL, NOW + timedelta(minutes=5), SETTINGS)
    assert record.state is BreakerState.OPEN
    assert record.opened_at == NOW + timedelta(minutes=5)
    assert record.last_failure_reason == "transient: HTTP 503"


def test_successes_in_the_window_keep_it_closed() -> None:
    record = _observed(FleetRecord(Api.CALENDAR), [FAIL] * 17 + [OK] * 3, NOW)
    assert (record.attempts, record.state) == (20, BreakerState.CLOSED)


def test_evidence_older_than_the_window_is_forgotten() -> None:
    record = _observed(FleetRecord(Api.CALENDAR), [FAIL] * 19, NOW)
    later = NOW + timedelta(seconds=SETTINGS.fleet_breaker_window_seconds + 1)
    record = observe(record, FAIL, later, SETTINGS)
    assert (record.window_started_at, record.attempts, record.state) == (
        later,
        1,
        BreakerState.CLOSED,
    )
    assert record.consecutive_failures == 1  # a new run of failures


def _spread(evidence: list[Evidence], minutes_apart: float) -> FleetRecord:
    record = FleetRecord(Api.CALENDAR)
    for n, item in enumerate(evidence):
        record = observe(record, item, NOW + n * minutes_apart * timedelta(minutes=1), SETTINGS)
    return record


@pytest.mark.parametrize(
    ("evidence", "minutes_apart", "expected_run", "expected_state"),
    [
        pytest.param([FAIL] * 20, 5, 20, BreakerState.OPEN, id="20-in-a-row-across-runs"),
        pytest.param([FAIL] * 19, 5, 19, BreakerState.CLOSED, id="19-in-a-row"),
        pytest.param([FAIL] * 19 + [OK], 5, 0, BreakerState.CLOSED, id="a-success-ends-it"),
        pytest.param([FAIL] * 10 + [OK] + [FAIL] * 10, 5, 10, BreakerState.CLOSED, id="split"),
        pytest.param([FAIL] * 20, 15, 20, BreakerState.OPEN, id="15-minutes-apart"),
        pytest.param([FAIL] * 20, 16, 1, BreakerState.CLOSED, id="16-minutes-apart"),
    ],
)
def test_a_rolling_run_of_20_failures_in_a_row_trips_it(
    evidence: list[Evidence],
    minutes_apart: float,
    expected_run: int,
    expected_state: BreakerState,
) -> None:
    record = _spread(evidence, minutes_apart)
    assert (record.consecutive_failures, record.state) == (expected_run, expected_state)


OPEN = replace(FleetRecord(Api.OAUTH), state=BreakerState.OPEN, opened_at=NOW, attempts=20)


@pytest.mark.parametrize(
    ("evidence", "expected_state"),
    [
        pytest.param(Evidence(Api.OAUTH, True, "503"), BreakerState.OPEN, id="failed-probe"),
        pytest.param(Evidence(Api.OAUTH, False), BreakerState.CLOSED, id="answered-probe"),
        pytest.param(None, BreakerState.CLOSED, id="probe-needed-no-request-of-it"),
    ],
)
def test_a_probe_closes_the_breaker_unless_it_failed_there(
    evidence: Evidence | None, expected_state: BreakerState
) -> None:
    probed = on_probe(OPEN, evidence, NOW + timedelta(minutes=5))
    assert probed.state is expected_state
    assert probed.last_probe_at == NOW + timedelta(minutes=5)
    if expected_state is BreakerState.CLOSED:
        assert probed == replace(closed(OPEN), last_probe_at=NOW + timedelta(minutes=5))


def test_apis_needed() -> None:
    assert apis_needed(CAL) == (Api.OAUTH, Api.CALENDAR)
    assert apis_needed(CON) == (Api.OAUTH, Api.PEOPLE)


CLOSED_ALL = {api: FleetRecord(api) for api in Api}
OAUTH_OPEN = {**CLOSED_ALL, Api.OAUTH: OPEN}
CALENDAR_OPEN = {**CLOSED_ALL, Api.CALENDAR: replace(OPEN, api=Api.CALENDAR)}


@pytest.mark.parametrize(
    ("integration", "records", "probed", "expected"),
    [
        pytest.param(CAL, CLOSED_ALL, frozenset(), (FleetGate.RUN, ()), id="all-closed-runs"),
        pytest.param(CAL, {}, frozenset(), (FleetGate.RUN, ()), id="nothing-stored-runs"),
        pytest.param(
            CAL, OAUTH_OPEN, frozenset(), (FleetGate.PROBE, (Api.OAUTH,)), id="first-is-the-probe"
        ),
        pytest.param(
            CON,
            OAUTH_OPEN,
            frozenset({Api.OAUTH}),
            (FleetGate.HOLD, ()),
            id="probed-holds-the-rest",
        ),
        pytest.param(
            CON, CALENDAR_OPEN, frozenset(), (FleetGate.RUN, ()), id="other-api-open-runs"
        ),
        pytest.param(
            CAL,
            CALENDAR_OPEN,
            frozenset({Api.OAUTH}),
            (FleetGate.PROBE, (Api.CALENDAR,)),
            id="each-api-probed-once",
        ),
    ],
)
def test_gate_runs_probes_once_a_run_or_holds(
    integration: Integration,
    records: dict[Api, FleetRecord],
    probed: frozenset[Api],
    expected: tuple[FleetGate, tuple[Api, ...]],
) -> None:
    assert gate(integration, records, probed, NOW + timedelta(minutes=5), SETTINGS) == expected


MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("last_probe_minutes", "now_minutes", "expected"),
    [
        pytest.param(None, 4, False, id="4-min-after-opening"),
        pytest.param(None, 5, True, id="5-min-after-opening"),
        pytest.param(5, 9, False, id="second-probe-not-yet"),
        pytest.param(5, 10, True, id="second-5-min-later"),
        pytest.param(10, 19, False, id="third-not-before-20"),
        pytest.param(10, 20, True, id="third-10-min-later"),
        pytest.param(20, 40, True, id="fourth-20-min-later"),
        pytest.param(40, 79, False, id="fifth-not-before-80"),
        pytest.param(80, 139, False, id="capped-at-an-hour-not-yet"),
        pytest.param(80, 140, True, id="capped-at-an-hour"),
        pytest.param(-30, 5, True, id="a-probe-of-an-earlier-opening-is-not-counted"),
    ],
)
def test_probes_back_off_from_5_minutes_doubling_to_an_hour(
    last_probe_minutes: int | None, now_minutes: int, expected: bool
) -> None:
    last = None if last_probe_minutes is None else NOW + last_probe_minutes * MINUTE
    record = replace(OPEN, last_probe_at=last)
    assert probe_due(record, NOW + now_minutes * MINUTE, SETTINGS) is expected


WINDOW = replace(FleetRecord(Api.OAUTH), window_started_at=NOW)


@pytest.mark.parametrize(
    ("attempts", "failures", "minutes", "expected"),
    [
        pytest.param(2, 2, 1, False, id="two-failures-too-few"),
        pytest.param(3, 3, 1, True, id="three-failures"),
        pytest.param(10, 9, 1, True, id="90-percent"),
        pytest.param(10, 8, 1, False, id="80-percent"),
        pytest.param(3, 3, 15, False, id="the-window-has-passed"),
    ],
)
def test_a_window_looks_like_an_outage_from_3_attempts_at_90_percent(
    attempts: int, failures: int, minutes: int, expected: bool
) -> None:
    record = replace(WINDOW, attempts=attempts, transient_failures=failures)
    assert looks_like_an_outage(record, NOW + minutes * MINUTE, SETTINGS) is expected


@pytest.mark.parametrize(
    ("run", "minutes_since", "expected"),
    [
        pytest.param(3, 5, True, id="3-in-a-row-5-min-ago"),
        pytest.param(2, 5, False, id="2-in-a-row"),
        pytest.param(3, 16, False, id="the-last-is-older-than-the-window"),
    ],
)
def test_three_failures_in_a_row_look_like_an_outage(
    run: int, minutes_since: int, expected: bool
) -> None:
    record = replace(FleetRecord(Api.OAUTH), consecutive_failures=run, last_evidence_at=NOW)
    assert looks_like_an_outage(record, NOW + minutes_since * MINUTE, SETTINGS) is expected


def test_an_open_breaker_does_not_look_like_an_outage_it_is_one() -> None:
    record = replace(WINDOW, attempts=20, transient_failures=20, state=BreakerState.OPEN)
    assert not looks_like_an_outage(record, NOW, SETTINGS)


SUSPECT = {**CLOSED_ALL, Api.OAUTH: replace(WINDOW, attempts=3, transient_failures=3)}


@pytest.mark.parametrize(
    ("records", "probed", "minutes", "expected"),
    [
        pytest.param(SUSPECT, frozenset(), 1, (FleetGate.SINGLE, ()), id="suspect-single"),
        pytest.param(SUSPECT, frozenset(), 20, (FleetGate.RUN, ()), id="window-over-runs"),
        pytest.param(OAUTH_OPEN, frozenset(), 4, (FleetGate.HOLD, ()), id="probe-not-due-holds"),
        pytest.param(
            OAUTH_OPEN, frozenset(), 5, (FleetGate.PROBE, (Api.OAUTH,)), id="probe-due-probes"
        ),
    ],
)
def test_gate_sends_single_requests_while_it_looks_like_an_outage_and_probes_when_due(
    records: dict[Api, FleetRecord],
    probed: frozenset[Api],
    minutes: int,
    expected: tuple[FleetGate, tuple[Api, ...]],
) -> None:
    assert gate(CAL, records, probed, NOW + minutes * MINUTE, SETTINGS) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {"reached_google": False, "failed_api": None, "transient": False, "refreshed": False},
            [],
            id="gated-attempt-is-no-evidence",
        ),
        pytest.param(
            {"reached_google": True, "failed_api": None, "transient": False, "refreshed": True},
            [Evidence(Api.OAUTH, False), Evidence(Api.CALENDAR, False)],
            id="success-with-refresh",
        ),
        pytest.param(
            {"reached_google": True, "failed_api": None, "transient": False, "refreshed": False},
            [Evidence(Api.CALENDAR, False)],
            id="success-with-a-valid-token",
        ),
        pytest.param(
            {
                "reached_google": True,
                "failed_api": Api.OAUTH,
                "transient": True,
                "refreshed": False,
                "reason": "503",
            },
            [Evidence(Api.OAUTH, True, "503")],
            id="refresh-failed-never-reached-calendar",
        ),
        pytest.param(
            {
                "reached_google": True,
                "failed_api": Api.CALENDAR,
                "transient": True,
                "refreshed": True,
                "reason": "503",
            },
            [Evidence(Api.OAUTH, False), Evidence(Api.CALENDAR, True, "503")],
            id="refreshed-then-calendar-failed",
        ),
        pytest.param(
            {
                "reached_google": True,
                "failed_api": Api.CALENDAR,
                "transient": False,
                "refreshed": False,
            },
            [Evidence(Api.CALENDAR, False)],
            id="a-quota-or-auth-failure-is-an-answer",
        ),
        pytest.param(
            {
                "reached_google": True,
                "failed_api": Api.OAUTH,
                "transient": False,
                "refreshed": False,
            },
            [Evidence(Api.OAUTH, False)],
            id="a-refused-client-is-an-answer-from-oauth-only",
        ),
    ],
)
def test_evidence_of_an_attempt(kwargs: dict, expected: list[Evidence]) -> None:
    assert evidence_of(CAL, **kwargs) == expected
