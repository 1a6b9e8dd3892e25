"""Savings against the one counterfactual (SPEC 3.4, rev 2): naive polling at the default
interval, same engines and retries; each outcome's claim checked against a hand-computed cost."""

from datetime import UTC, datetime, timedelta

import pytest

from syncctl.config import DAY, HOUR, Settings
from syncctl.model import Integration, SavedBy, Trigger
from syncctl.policy.savings import (
    FALLBACK_CALLS_PER_SYNC,
    NOTHING,
    Savings,
    Stretch,
    calls_per_sync,
    estimate_saved,
    naive_poll_refreshes,
    naive_polls,
    poll_equivalent,
    typical_calls,
    unchanged_poll_reads,
)
from syncctl.policy.schedule import Outcome

ANCHOR = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
SETTINGS = Settings()
CAL = Integration.CALENDAR
CON = Integration.CONTACTS
D_CAL = 4 * HOUR
D_CON = 3 * DAY
H = timedelta(hours=1)


def _stretch(previous_hours: float | None, now_hours: float) -> Stretch:
    previous = None if previous_hours is None else ANCHOR + previous_hours * H
    return Stretch(ANCHOR, previous, ANCHOR + now_hours * H)


@pytest.mark.parametrize(
    ("previous", "now", "default", "expected"),
    [
        pytest.param(None, 0, D_CAL, 1, id="first-attempt-is-the-first-naive-poll"),
        pytest.param(0, 4, D_CAL, 1, id="one-default-interval"),
        pytest.param(0, 8, D_CAL, 2, id="backed-off-twice-the-interval"),
        pytest.param(0, 3.99, D_CAL, 0, id="just-before-the-grid-point"),
        pytest.param(4, 5, D_CAL, 0, id="webhook-sync-between-grid-points"),
        pytest.param(5, 8, D_CAL, 1, id="the-next-attempt-gets-the-grid-point"),
        pytest.param(4.1, 28.1, D_CAL, 6, id="late-by-minutes-relaxed-24h"),
        pytest.param(0, 144, D_CON, 2, id="contacts-6-days"),
    ],
)
def test_naive_polls_are_the_grid_points_in_the_stretch(
    previous: float | None, now: float, default: int, expected: int
) -> None:
    assert naive_polls(_stretch(previous, now), default) == expected


def test_stretches_partition_the_timeline_so_polls_add_up() -> None:
    # GIVEN attempts at irregular times (webhook syncs, backoff retries, a long open window)
    moments = [0, 0.5, 4, 4.08, 4.25, 5.25, 7.25, 11.25, 15.25, 16, 40]
    total = sum(
        naive_polls(_stretch(prev, now), D_CAL)
        for prev, now in zip([None, *moments], moments, strict=False)
    )
    # THEN the polls they account for are exactly the naive grid up to the last one: 0, 4, ..., 40
    assert total == 11


@pytest.mark.parametrize(
    ("recent", "expected"),
    [
        pytest.param([], None, id="no-history"),
        pytest.param([5], 5.0, id="one"),
        pytest.param([5, 5, 8, 5, 5, 5, 5], 5.0, id="a-renewal-does-not-move-it"),
        pytest.param([4, 6], 5.0, id="even-count"),
    ],
)
def test_typical_calls_is_the_median(recent: list[int], expected: float | None) -> None:
    assert typical_calls(recent) == expected


@pytest.mark.parametrize(
    ("made", "skipped", "expected"),
    [
        pytest.param(4, False, 4, id="listed-the-calendar-list"),
        pytest.param(3, True, 4, id="skipped-it-naive-sends-one-more"),
        pytest.param(0, True, 1, id="no-calendar-mirrored"),
    ],
)
def test_poll_equivalent_adds_the_calendar_list_a_naive_poll_sends(
    made: int, skipped: bool, expected: int
) -> None:
    assert poll_equivalent(made, skipped) == expected


@pytest.mark.parametrize(
    ("integration", "calendars", "expected"),
    [
        pytest.param(CAL, 1, 2, id="list-and-one-calendar"),
        pytest.param(CAL, 3, 4, id="three-calendars"),
        pytest.param(CAL, 0, None, id="none-mirrored-yet"),
        pytest.param(CAL, None, None, id="unknown"),
        pytest.param(CON, None, 2, id="contacts-connections-and-groups"),
    ],
)
def test_an_unchanged_naive_poll_from_the_mirror_shape(
    integration: Integration, calendars: int | None, expected: int | None
) -> None:
    assert unchanged_poll_reads(integration, calendars) == expected


def test_calls_per_sync_fallback() -> None:
    assert calls_per_sync(CAL, None) == FALLBACK_CALLS_PER_SYNC[CAL] == 5
    assert calls_per_sync(CON, 0.0) == FALLBACK_CALLS_PER_SYNC[CON] == 3
    assert calls_per_sync(CAL, 4.0) == 4.0


# Each row: GIVEN an outcome over a stretch, THEN the claim = naive's calls (by hand) - made.
# A calendar success's `made` includes its one token refresh (overhead 1) unless said; `c` is
# a pair's typical reads per poll (without refresh): a naive calendar poll is c + 1 refresh.
CASES = [
    # (id, outcome, trigger, stretch, calls_made, extra, naive_by_hand, mechanism)
    ("first-sync", Outcome.CHANGED, Trigger.SCHEDULED, (None, 0), 9, {"overhead": 1}, 9, None),
    (
        "success-at-default",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (0, 4),
        5,
        {"c": 4, "overhead": 1},
        5,
        None,
    ),
    (
        "backed-off-8h",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (0, 8),
        5,
        {"c": 4, "overhead": 1},
        10,
        SavedBy.ADAPTIVE_SCHEDULE,
    ),
    (
        "backed-off-no-history-own-calls",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (0, 8),
        4,
        {"own": True, "overhead": 1},
        8,
        SavedBy.ADAPTIVE_SCHEDULE,
    ),
    (
        "poll-on-a-fresh-token-still-priced-with-the-naive-refresh",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (0, 8),
        3,
        {"own": True},
        8,
        SavedBy.ADAPTIVE_SCHEDULE,
    ),
    (
        "no-history-own-calls-plus-the-skipped-calendar-list",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (0, 8),
        3,
        {"own": True, "skipped": True, "overhead": 1},
        8,
        SavedBy.ADAPTIVE_SCHEDULE,
    ),
    (
        "renewal-poll-priced-without-its-watches",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (0, 8),
        6,
        {"own": True, "overhead": 3},
        8,
        SavedBy.ADAPTIVE_SCHEDULE,
    ),
    (
        "list-skipped-at-default-interval",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (0, 4),
        3,
        {"c": 3, "skipped": True},
        4,
        SavedBy.ADAPTIVE_SCHEDULE,
    ),
    (
        "first-sync-priced-without-its-watches",
        Outcome.CHANGED,
        Trigger.SCHEDULED,
        (None, 0),
        7,
        {"overhead": 4},
        4,
        SavedBy.ADAPTIVE_SCHEDULE,
    ),
    ("no-history-fallback", Outcome.UNCHANGED, Trigger.WEBHOOK, (0, 8), 2, {}, 10, SavedBy.WEBHOOK),
    (
        "no-history-two-mirrored-calendars",
        Outcome.UNCHANGED,
        Trigger.WEBHOOK,
        (0, 8),
        2,
        {"unchanged": 3},
        8,
        SavedBy.WEBHOOK,
    ),
    (
        "history-wins-over-the-mirror-shape",
        Outcome.UNCHANGED,
        Trigger.WEBHOOK,
        (0, 8),
        2,
        {"c": 4, "unchanged": 3},
        10,
        SavedBy.WEBHOOK,
    ),
    (
        "relaxed-24h-by-channel",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (0, 24),
        5,
        {"c": 4, "shaped": True},
        30,
        SavedBy.WEBHOOK,
    ),
    (
        "early-webhook-sync-costs",
        Outcome.CHANGED,
        Trigger.WEBHOOK,
        (4, 5),
        2,
        {"c": 5},
        0,
        SavedBy.WEBHOOK,
    ),
    (
        "revoked-skip-per-slot",
        Outcome.INVALID_TOKEN,
        Trigger.SCHEDULED,
        (0, 8),
        0,
        {},
        2,
        SavedBy.TOKEN_HEALTH,
    ),
    (
        "revocation-found-by-refresh",
        Outcome.INVALID_TOKEN,
        Trigger.SCHEDULED,
        (0, 4),
        1,
        {},
        1,
        None,
    ),
    ("auth-failure", Outcome.AUTH_FAILURE, Trigger.SCHEDULED, (0, 4), 3, {}, 3, None),
    (
        "client-failure-per-run",
        Outcome.CLIENT_FAILURE,
        Trigger.SCHEDULED,
        (4, 4.1),
        1,
        {},
        0,
        SavedBy.TOKEN_HEALTH,
    ),
    (
        "first-transient-failure",
        Outcome.TRANSIENT_FAILURE,
        Trigger.SCHEDULED,
        (0, 4),
        5,
        {},
        5,
        None,
    ),
    (
        "backoff-retry-5-min",
        Outcome.TRANSIENT_FAILURE,
        Trigger.SCHEDULED,
        (4, 4.08),
        5,
        {},
        0,
        SavedBy.CIRCUIT_BREAKER,
    ),
    (
        "trial-after-the-2h-window",
        Outcome.TRANSIENT_FAILURE,
        Trigger.SCHEDULED,
        (5.25, 7.25),
        1,
        {"probe": True, "trial": True},
        0,
        SavedBy.CIRCUIT_BREAKER,
    ),
    (
        "trial-after-the-4h-window",
        Outcome.TRANSIENT_FAILURE,
        Trigger.SCHEDULED,
        (7.25, 11.25),
        1,
        {"probe": True, "trial": True},
        5,
        SavedBy.CIRCUIT_BREAKER,
    ),
    (
        "probe-refresh-ok-then-data-fails",
        Outcome.TRANSIENT_FAILURE,
        Trigger.SCHEDULED,
        (0, 8),
        2,
        {"probe": True},
        12,
        SavedBy.CIRCUIT_BREAKER,
    ),
    (
        "trial-success-after-outage",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (11.25, 15.25),
        5,
        {"c": 4, "overhead": 1, "trial": True},
        5,
        None,
    ),
    (
        "trial-success-over-two-polls",
        Outcome.UNCHANGED,
        Trigger.SCHEDULED,
        (3.5, 8.5),
        5,
        {"c": 4, "overhead": 1, "trial": True},
        10,
        SavedBy.CIRCUIT_BREAKER,
    ),
    (
        "quota-failure",
        Outcome.QUOTA_FAILURE,
        Trigger.SCHEDULED,
        (0, 8),
        5,
        {},
        10,
        SavedBy.CIRCUIT_BREAKER,
    ),
    (
        "webhook-while-open",
        Outcome.CIRCUIT_OPEN,
        Trigger.WEBHOOK,
        (0, 4),
        0,
        {"f": 5.0},
        5,
        SavedBy.CIRCUIT_BREAKER,
    ),
    (
        "manual-success",
        Outcome.CHANGED,
        Trigger.MANUAL,
        None,
        5,
        {"c": 3, "overhead": 1},
        5,
        None,
    ),
    ("manual-failure", Outcome.TRANSIENT_FAILURE, Trigger.MANUAL, None, 5, {}, 5, None),
    (
        "manual-skip-while-open",
        Outcome.CIRCUIT_OPEN,
        Trigger.MANUAL,
        None,
        0,
        {},
        5,
        SavedBy.CIRCUIT_BREAKER,
    ),
    (
        "manual-skip-revoked",
        Outcome.INVALID_TOKEN,
        Trigger.MANUAL,
        None,
        0,
        {},
        1,
        SavedBy.TOKEN_HEALTH,
    ),
]


@pytest.mark.parametrize(
    ("outcome", "trigger", "stretch", "made", "extra", "naive", "mechanism"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_outcome_claims_naive_cost_over_its_stretch_minus_what_it_sent(
    outcome: Outcome,
    trigger: Trigger,
    stretch: tuple[float | None, float] | None,
    made: int,
    extra: dict,
    naive: int,
    mechanism: SavedBy | None,
) -> None:
    saved = estimate_saved(
        outcome,
        integration=CAL,
        trigger=trigger,
        stretch=None if stretch is None else _stretch(*stretch),
        default_seconds=D_CAL,
        calls_made=made,
        settings=SETTINGS,
        overhead_calls=extra.get("overhead", 0),
        single_probe=extra.get("probe", False),
        breaker_trial=extra.get("trial", False),
        webhook_shaped=extra.get("shaped", False),
        own_is_a_poll=extra.get("own", False),
        calendar_list_skipped=extra.get("skipped", False),
        recent_calls_per_sync=extra.get("c"),
        recent_calls_per_failure=extra.get("f"),
        unchanged_calls=extra.get("unchanged"),
    )
    expected = Savings(naive - made, mechanism) if naive != made else NOTHING
    assert saved == expected
    assert saved.calls >= -made


def test_a_failing_pair_claims_exactly_what_naive_polling_sent_more() -> None:
    # GIVEN a calendar pair failing from hour 0: 3 failures (5 calls each) 5 and 10 minutes
    # apart, then single-probe trials after 1 h, 2 h and then every 4 h (the cap), to hour 48
    attempts = [(0.0, 5, False), (5 / 60, 5, False), (15 / 60, 5, False)]
    at, window = 15 / 60, 1.0
    while at + window <= 48:
        at += window
        attempts.append((at, 1, True))
        window = min(2 * window, 4.0)
    claimed = 0
    previous = -4.0  # the last success, one interval before the failures began
    anchor = ANCHOR - 4 * H
    for hours, made, probe in attempts:
        now = ANCHOR + hours * H
        claimed += estimate_saved(
            Outcome.TRANSIENT_FAILURE,
            integration=CAL,
            trigger=Trigger.SCHEDULED,
            stretch=Stretch(anchor, ANCHOR + previous * H, now),
            default_seconds=D_CAL,
            calls_made=made,
            settings=SETTINGS,
            single_probe=probe,
            breaker_trial=probe,
        ).calls
        previous = hours
    # THEN naive polling (a 5-call failing poll at hours 0, 4, ..., 44) minus ours
    naive = 5 * len(range(0, 45, 4))
    made = sum(m for _, m, _ in attempts)
    assert claimed == naive - made
    assert made < naive  # and the failing pair costs less than naive polling


@pytest.mark.parametrize(
    ("integration", "settings", "expected"),
    [
        pytest.param(CAL, SETTINGS, 1, id="calendar-poll-refreshes"),
        pytest.param(CON, SETTINGS, 0, id="contacts-rides-on-the-calendar-poll"),
        pytest.param(
            CON,
            Settings(contacts_interval_seconds=3 * DAY + 60),
            1,
            id="contacts-off-the-calendar-grid-refreshes",
        ),
    ],
)
def test_naive_poll_refreshes(integration: Integration, settings: Settings, expected: int) -> None:
    assert naive_poll_refreshes(integration, settings) == expected
