"""`syncctl report`: every figure equals an independent recomputation over the stored rows.

The scenario is written straight into a real database (the orchestrator is not needed to test
arithmetic); `expected_report` recomputes each figure in plain Python from `SELECT *` rows.
"""

from __future__ import annotations

import json
import math
import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.clock import from_iso, to_iso
from syncctl.report import build_report, parse_duration
from syncctl.report_render.prometheus import render_prometheus
from syncctl.store import open_database
from syncctl.store.report_queries import has_rollup
from syncctl.store.schema import ROLLUP_MIGRATION, ROLLUP_TABLE
from syncctl.users import BadInput

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KINDS = {"google_contacts": "contacts", "google_calendar": "calendar"}
# Calls per sync without any history, the same for the report and the savings estimate.
FALLBACK = {"google_contacts": 3, "google_calendar": 5}
DEFAULT_INTERVAL = {"google_contacts": 3 * 86400, "google_calendar": 4 * 3600}
MECHANISMS = ["token_health", "circuit_breaker", "adaptive_schedule", "webhook"]
REASONS = ["invalid_token", "circuit_open"]
ERROR_CLASSES = [
    "auth",
    "quota",
    "sync_token_expired",
    "transient",
    "client",
    "other",
    "unclassified",
]


# The fleet breakers of an empty fleet_breaker table: every API closed.
FLEET_APIS = [("oauth", "Google OAuth"), ("people", "People API"), ("calendar", "Calendar API")]
COUNTERFACTUAL = "naive polling: every pair at its default interval, same engines and retries"


def stamp(moment: datetime) -> str:
    return to_iso(moment)


def build_scenario(db, *, now: datetime = NOW, users: int = 30, seed: int = 7) -> None:
    """A fleet with every case the report distinguishes, as rows in the state tables."""
    rng = random.Random(seed)
    conn = db.conn
    conn.execute("BEGIN")
    for n in range(users):
        uid = f"u{n:02d}"
        created = stamp(now - timedelta(days=40))
        conn.execute(
            "INSERT INTO users (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [uid, f"{uid}@example.test" if n % 3 else None, created, created],
        )
        if n == users - 1:
            continue  # a user without integrations
        kinds = ["google_calendar"] if n % 5 == 4 else list(KINDS)
        for kind in kinds:
            conn.execute("INSERT INTO user_integrations VALUES (?, ?, ?)", [uid, kind, created])
            status = rng.choice(["valid", "valid", "valid", "expired", "unknown"])
            if n in (3, 7):
                status = "revoked"
            conn.execute(
                "INSERT INTO token_health VALUES (?, ?, ?, ?, ?)",
                [uid, kind, status, stamp(now - timedelta(hours=n + 1)), None],
            )
            state, failures, opened, retry, reason = "closed", 0, None, None, None
            if (n, kind) == (5, "google_calendar"):
                state, failures, reason = "open", 3, "transient: HTTP 503"
                opened, retry = (
                    stamp(now - timedelta(minutes=20)),
                    stamp(now + timedelta(minutes=40)),
                )
            elif (n, kind) == (6, "google_contacts"):
                state, failures, reason = "open", 4, "transient: timeout"
                opened, retry = stamp(now - timedelta(hours=2)), stamp(now - timedelta(hours=1))
            elif (n, kind) == (8, "google_calendar"):
                state, failures = "half_open", 3
            conn.execute(
                "INSERT INTO circuit_breaker_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [uid, kind, state, failures, opened, reason, opened, retry],
            )
            default = DEFAULT_INTERVAL[kind]
            current = default * rng.choice([1, 1, 2])
            next_at = now + timedelta(seconds=rng.randint(-7200, 7200))
            if n in (3, 5, 6):
                next_at = now - timedelta(minutes=5)  # due: revoked, open, open-but-retryable
            conn.execute(
                "INSERT INTO sync_schedule (user_id, integration_type, default_frequency_seconds,"
                " current_frequency_seconds, consecutive_no_changes, last_sync_at, next_sync_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [uid, kind, default, current, rng.randint(0, 5), None, stamp(next_at)],
            )
    # Reconnect notices: u07 open, u03 resolved only, u11 open although its token looks fine.
    notices = [
        ("u07", stamp(now - timedelta(days=2)), None),
        ("u07", stamp(now - timedelta(days=1)), None),
        ("u03", stamp(now - timedelta(days=3)), stamp(now - timedelta(days=2))),
        ("u11", stamp(now - timedelta(hours=5)), None),
    ]
    conn.executemany(
        "INSERT INTO notifications (user_id, kind, message, created_at, resolved_at)"
        " VALUES (?, 'reconnect_required', 'reconnect', ?, ?)",
        notices,
    )
    conn.execute(
        "INSERT INTO notifications (user_id, kind, message, created_at) VALUES"
        " ('u12', 'other_notice', 'x', ?)",
        [stamp(now - timedelta(hours=1))],
    )
    rows = []
    for n in range(users - 1):
        uid = f"u{n:02d}"
        kinds = ["google_calendar"] if n % 5 == 4 else list(KINDS)
        for kind in kinds:
            if n == 10 and kind == "google_calendar":
                continue  # enabled but never attempted: never synced
            for _ in range(rng.randint(3, 25)):
                at = now - timedelta(seconds=rng.randint(0, 12 * 86400))
                rows.append(_attempt(rng, uid, kind, at, never_succeeds=n == 9))
    # Window edges: exactly at the start and at now are in; after now is out.
    rows.append(_attempt(rng, "u01", "google_calendar", now - timedelta(days=7), force="success"))
    rows.append(_attempt(rng, "u01", "google_calendar", now, force="success"))
    rows.append(_attempt(rng, "u01", "google_calendar", now + timedelta(minutes=1), "success"))
    # Metrics of an integration the user no longer has still count in the window figures.
    rows.append(_attempt(rng, "u04", "google_contacts", now - timedelta(days=1), "success"))
    rows.sort(key=lambda r: r[-1])
    conn.executemany(
        "INSERT INTO sync_metrics (user_id, integration_type, sync_type, trigger, result,"
        " skip_reason, duration_ms, items_processed, items_added, items_updated, items_deleted,"
        " full_resync, api_calls_made, api_calls_saved, saved_by, error_class, error_message,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")


def _attempt(rng, uid, kind, at, force=None, never_succeeds=False) -> tuple:
    result = force or rng.choice(["success"] * 6 + ["failure", "skipped", "skipped"])
    if never_succeeds and result == "success":
        result = "failure"
    trigger = rng.choice(["scheduled"] * 5 + ["manual", "webhook"])
    skip_reason = saved_by = error_class = error_message = sync_type = None
    made = saved = items = full = 0
    if result == "skipped":
        skip_reason = rng.choice(["invalid_token", "circuit_open"])
        saved = rng.randint(1, 4)
        saved_by = "token_health" if skip_reason == "invalid_token" else "circuit_breaker"
    elif result == "failure":
        error_class = rng.choice(["transient", "quota", "other", None])
        error_message = "HTTP 503 from Google" if error_class else "unexpected"
        made = rng.randint(1, 6)
    else:
        sync_type = rng.choice(["incremental", "incremental", "full"])
        full = int(sync_type == "full" and rng.random() < 0.5)
        made = rng.randint(1, 9)
        items = rng.randint(0, 40)
        if rng.random() < 0.3:
            saved, saved_by = rng.randint(1, 3), rng.choice(["adaptive_schedule", "webhook"])
    added, updated = items // 2, items // 4
    return (
        uid, kind, sync_type, trigger, result, skip_reason, rng.randint(5, 900), items, added,
        updated, items - added - updated, full, made, saved, saved_by, error_class,
        error_message, stamp(at),
    )  # fmt: skip


# --- the independent recomputation --------------------------------------------------------


def table(db, name: str) -> list[dict]:
    cursor = db.conn.execute(f"SELECT * FROM {name}")  # noqa: S608 - constant names
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def pct(part: int, whole: int):
    return None if whole == 0 else round(100.0 * part / whole, 2)


def rank(values: list[int], p: int):
    values = sorted(values)
    return values[max(1, math.ceil(p * len(values) / 100)) - 1] if values else None


def expected_report(db, now: datetime, since: timedelta, user: str | None = None) -> dict:
    """Every figure recomputed with plain Python over whole tables (no SQL aggregation)."""

    def mine(rows, key="user_id"):
        return [r for r in rows if user is None or r[key] == user]

    users = mine(table(db, "users"), "id")
    fleet_rows = {row["api"]: row for row in table(db, "fleet_breaker")}
    enabled = mine(table(db, "user_integrations"))
    health = mine(table(db, "token_health"))
    breakers = mine(table(db, "circuit_breaker_state"))
    schedule = mine(table(db, "sync_schedule"))
    notices = mine(table(db, "notifications"))
    metrics = mine(table(db, "sync_metrics"))
    start, end = stamp(now - since), stamp(now)
    status_of = {(h["user_id"], h["integration_type"]): h["status"] for h in health}
    window = [m for m in metrics if start <= m["created_at"] <= end]

    def split(rows, figures):
        return {
            "total": figures(rows),
            "by_integration": {
                short: figures([r for r in rows if r["integration_type"] == kind])
                for kind, short in KINDS.items()
            },
        }

    def counted(rows, column, values):
        return {v: sum(1 for r in rows if r[column] == v) for v in values}

    def fleet_pairs(rows):
        return {
            "enabled": len(rows),
            "active": sum(
                1 for r in rows if status_of.get((r["user_id"], r["integration_type"])) != "revoked"
            ),
        }

    def syncs(rows):
        by = counted(rows, "result", ["success", "failure", "skipped"])
        failures = [r for r in rows if r["result"] == "failure"]
        return {
            "attempts": len(rows),
            **by,
            "skipped_by_reason": counted(
                [r for r in rows if r["result"] == "skipped"],
                "skip_reason",
                ["invalid_token", "circuit_open", "mass_delete_held"],
            ),
            "success_rate_percent": pct(by["success"], by["success"] + by["failure"]),
            "failures_by_class": {
                c: sum(1 for r in failures if (r["error_class"] or "unclassified") == c)
                for c in ERROR_CLASSES
            },
            "by_trigger": counted(rows, "trigger", ["scheduled", "manual", "webhook"]),
            "full_resyncs": sum(r["full_resync"] for r in rows),
            "items_processed": sum(r["items_processed"] for r in rows),
        }

    def calls(rows):
        made = sum(r["api_calls_made"] for r in rows)
        saved = sum(r["api_calls_saved"] for r in rows)
        return {
            "made": made,
            "saved": saved,
            "saved_share_percent": pct(saved, made + saved),
            "saved_by": {
                m: sum(r["api_calls_saved"] for r in rows if r["saved_by"] == m) for m in MECHANISMS
            },
        }

    last_success = {}
    for m in metrics:
        if m["result"] == "success" and m["created_at"] <= end:
            key = (m["user_id"], m["integration_type"])
            last_success[key] = max(last_success.get(key, ""), m["created_at"])
    interval = {(s["user_id"], s["integration_type"]): s for s in schedule}

    def staleness(kind):
        pairs = [e for e in enabled if e["integration_type"] == kind]
        aged = []
        for e in pairs:
            key = (e["user_id"], kind)
            last = last_success.get(key)
            age = None if last is None else int((now - from_iso(last)).total_seconds())
            aged.append((e["user_id"], last, age, interval[key]["current_frequency_seconds"]))
        ages = [a for _, _, a, _ in aged if a is not None]
        never = sorted(a for a in aged if a[2] is None)
        synced = sorted((a for a in aged if a[2] is not None), key=lambda a: (-a[2], a[0]))
        return {
            "pairs": len(pairs),
            "synced": len(ages),
            "never_synced": len(pairs) - len(ages),
            "p50_seconds": rank(ages, 50),
            "p95_seconds": rank(ages, 95),
            "max_seconds": max(ages) if ages else None,
            "expected_interval_seconds": rank([a[3] for a in aged], 50),
            "overdue": sum(1 for a in aged if a[2] is not None and a[2] > a[3]),
            "worst": [
                {"user_id": u, "last_success_at": last, "staleness_seconds": age,
                 "interval_seconds": iv}
                for u, last, age, iv in (never + synced)[:5]
            ],
        }  # fmt: skip

    fleet_means = {}
    for kind in KINDS:
        ok = [
            r["api_calls_made"]
            for r in table(db, "sync_metrics")
            if r["integration_type"] == kind and r["result"] == "success"
            and start <= r["created_at"] <= end
        ]  # fmt: skip
        fleet_means[kind] = sum(ok) / len(ok) if ok else FALLBACK[kind]

    def next_run(kind):
        block = {"due": 0, "will_run": 0, "skip_revoked": 0, "skip_breaker_open": 0}
        cost = 0.0
        breaker = {(b["user_id"], b["integration_type"]): b for b in breakers}
        for s in schedule:
            if s["integration_type"] != kind or s["next_sync_at"] > end:
                continue
            key = (s["user_id"], kind)
            block["due"] += 1
            b = breaker.get(key)
            if status_of.get(key) == "revoked":
                block["skip_revoked"] += 1
            elif b and b["state"] != "closed" and (b["next_retry_at"] or "") > end:
                # open, or half-open with its trial lease held: the gate skips it
                block["skip_breaker_open"] += 1
            else:
                block["will_run"] += 1
                history = sorted(
                    (m for m in metrics if (m["user_id"], m["integration_type"]) == key
                     and m["result"] == "success" and m["sync_type"] == "incremental"
                     and not m["breaker_trial"]),
                    key=lambda m: (m["created_at"], m["id"]),
                )[-10:]  # fmt: skip
                made = [m["api_calls_made"] for m in history]
                cost += sum(made) / len(made) if made else fleet_means[kind]
        return {**block, "expected_api_calls": cost}

    per_run = {short: next_run(kind) for kind, short in KINDS.items()}
    total_run = {k: sum(b[k] for b in per_run.values()) for k in per_run["contacts"]}
    for block in (*per_run.values(), total_run):
        block["expected_api_calls"] = round(block["expected_api_calls"], 1)

    revoked_users = {h["user_id"] for h in health if h["status"] == "revoked"}
    open_notices = [
        n for n in notices if n["kind"] == "reconnect_required" and n["resolved_at"] is None
    ]
    reconnect = []
    for uid in revoked_users | {n["user_id"] for n in open_notices}:
        since_notice = min((n["created_at"] for n in open_notices if n["user_id"] == uid),
                           default=None)  # fmt: skip
        checked = [
            h["last_checked"] for h in health if h["user_id"] == uid and h["status"] == "revoked"
        ]
        reconnect.append(
            {
                "user_id": uid,
                "integrations": sorted(
                    KINDS[h["integration_type"]]
                    for h in health
                    if h["user_id"] == uid and h["status"] == "revoked"
                ),
                "since": since_notice or min(checked, default=None),
            }
        )
    reconnect.sort(key=lambda r: (r["since"] is None, r["since"] or "", r["user_id"]))

    days = []
    day = (now - since).date()
    while day <= now.date():
        rows = [m for m in window if m["created_at"][:10] == day.isoformat()]
        days.append(
            {
                "date": day.isoformat(),
                **counted(rows, "result", ["success", "failure", "skipped"]),
                "api_calls_made": sum(r["api_calls_made"] for r in rows),
                "api_calls_saved": sum(r["api_calls_saved"] for r in rows),
            }
        )
        day += timedelta(days=1)

    token_values = ["valid", "expired", "revoked", "unknown"]
    breaker_values = ["closed", "open", "half_open"]
    return {
        "report_version": 1,
        "generated_at": end,
        "window": {"since": start, "until": end, "seconds": int(since.total_seconds())},
        "user_id": user,
        "fleet": {
            "users": len(users),
            "users_with_integrations": len({e["user_id"] for e in enabled}),
            "integrations": split(enabled, fleet_pairs),
        },
        "token_health": {
            **split(health, lambda rows: counted(rows, "status", token_values)),
            "reconnect_required": reconnect,
        },
        "breakers": {
            **split(breakers, lambda rows: counted(rows, "state", breaker_values)),
            "open": [
                {
                    "user_id": b["user_id"],
                    "integration": KINDS[b["integration_type"]],
                    "failure_count": b["failure_count"],
                    "reason": b["last_failure_reason"],
                    "opened_at": b["opened_at"],
                    "next_retry_at": b["next_retry_at"],
                }
                for b in sorted(
                    breakers,
                    key=lambda b: (b["next_retry_at"] or "", b["user_id"], b["integration_type"]),
                )  # fmt: skip
                if b["state"] == "open"
            ],
            "fleet": [
                {
                    "api": api,
                    "name": name,
                    "state": "closed",
                    "attempts": 0,
                    "transient_failures": 0,
                    "window_started_at": None,
                    "opened_at": None,
                    "last_probe_at": None,
                    "last_failure_reason": None,
                    "consecutive_failures": 0,
                    "last_evidence_at": None,
                    **{k: v for k, v in fleet_rows.get(api, {}).items() if k != "api"},
                }
                for api, name in FLEET_APIS
            ],
        },
        "syncs": split(window, syncs),
        "api_calls": {**split(window, calls), "counterfactual": COUNTERFACTUAL},
        "staleness": {"by_integration": {short: staleness(k) for k, short in KINDS.items()}},
        "next_run": {
            "total": total_run,
            "by_integration": per_run,
            "fallback_calls_per_sync": {"contacts": 3, "calendar": 5},
        },
        "daily": days,
        "unreadable_values": [],  # every stored time of the scenario reads
    }


# --- fixtures ----------------------------------------------------------------------------


def set_rollup(database, wanted: bool) -> None:
    """Give the database the hourly rollup of sync_metrics (with triggers), or take it away."""
    if has_rollup(database.conn) == wanted:
        return
    if wanted:
        database.conn.executescript(ROLLUP_MIGRATION)
        return
    for trigger in ("insert", "delete", "update"):
        database.conn.execute(f"DROP TRIGGER sync_metrics_rollup_{trigger}")
    database.conn.execute(f"DROP TABLE {ROLLUP_TABLE}")


@pytest.fixture(params=["rollup", "raw"])
def db(tmp_path, request):
    """The scenario, with the rollup kept by its triggers as rows arrive, or without one."""
    database = open_database(tmp_path / "report.db")
    set_rollup(database, request.param == "rollup")
    build_scenario(database)
    yield database
    database.close()


@pytest.fixture
def cli(tmp_path, db, monkeypatch):
    monkeypatch.setenv("SYNCCTL_DB", str(tmp_path / "report.db"))
    monkeypatch.setenv("SYNCCTL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "none.toml").write_text("")
    runner = CliRunner()

    def invoke(*args: str):
        with freeze_time(NOW):
            return runner.invoke(app, ["report", *args], catch_exceptions=False)

    return invoke


def fleet_figures(report: dict) -> dict:
    # The guard's holds and the quota budget have their own tests (tests/test_report_fleet.py).
    skipped = {"user", "mass_delete_holds", "quota"}
    return {k: v for k, v in report.items() if k not in skipped}


# --- figures ---------------------------------------------------------------------------------


def test_scenario_covers_the_cases_the_report_distinguishes(db):
    report = build_report(db, now=NOW, since=timedelta(days=7))
    assert report["breakers"]["total"] == {"closed": 50, "open": 2, "half_open": 1}
    assert [r["user_id"] for r in report["token_health"]["reconnect_required"]] == [
        "u07", "u11", "u03",
    ]  # fmt: skip
    assert report["staleness"]["by_integration"]["calendar"]["never_synced"] == 2
    assert report["next_run"]["total"]["skip_revoked"] >= 1
    assert report["next_run"]["total"]["skip_breaker_open"] == 1
    assert report["syncs"]["total"]["failures_by_class"]["unclassified"] > 0


@pytest.mark.parametrize("since", ["7d", "24h", "30m", "90m", "2w", "90d"])
@pytest.mark.parametrize("now", [NOW, NOW + timedelta(minutes=34, seconds=56)])
def test_every_fleet_figure_equals_an_independent_recomputation(db, since, now):
    window = parse_duration(since)
    assert fleet_figures(build_report(db, now=now, since=window)) == expected_report(
        db, now, window
    )


def test_fleet_window_reads_whole_hours_from_the_rollup(db):
    set_rollup(db, True)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    build_report(db, now=NOW, since=timedelta(days=7))
    db.conn.set_trace_callback(None)
    assert any(f"FROM {ROLLUP_TABLE}" in sql for sql in statements)


def test_rollup_backfilled_later_gives_the_same_figures(db):
    set_rollup(db, False)
    before = build_report(db, now=NOW, since=timedelta(days=9))
    set_rollup(db, True)
    assert build_report(db, now=NOW, since=timedelta(days=9)) == before


def test_rollup_follows_deleted_and_corrected_metrics_rows(db):
    set_rollup(db, True)
    with db.conn:
        db.conn.execute("DELETE FROM sync_metrics WHERE id % 7 = 0")
        db.conn.execute(
            "UPDATE sync_metrics SET result = 'failure', error_class = 'transient',"
            " api_calls_made = api_calls_made + 1 WHERE id % 5 = 0 AND result = 'success'"
        )
    window = timedelta(days=10)
    assert fleet_figures(build_report(db, now=NOW, since=window)) == expected_report(
        db, NOW, window
    )


@pytest.mark.parametrize("user", ["u01", "u03", "u05", "u09", "u10", "u29"])
def test_user_figures_equal_an_independent_recomputation_for_that_user(db, user):
    report = build_report(db, now=NOW, since=timedelta(days=7), user_id=user)
    expected = expected_report(db, NOW, timedelta(days=7), user=user)
    # A user's next-run fallback is the fleet's mean, which expected_report also uses.
    assert fleet_figures(report) == expected


def test_window_includes_its_start_and_now_but_not_the_future(db):
    one_second = build_report(db, now=NOW, since=timedelta(seconds=1), user_id="u01")
    history = one_second["user"]["history"]
    assert [h["created_at"] for h in history] == [stamp(NOW)]
    exact = build_report(db, now=NOW, since=timedelta(days=7), user_id="u01")
    assert exact["user"]["history"][-1]["created_at"] >= stamp(NOW - timedelta(days=7))
    assert stamp(NOW - timedelta(days=7)) in [h["created_at"] for h in exact["user"]["history"]]


def test_user_drill_down_shows_state_and_history_newest_first(db):
    report = build_report(db, now=NOW, since=timedelta(days=7), user_id="u05")
    user = report["user"]
    assert user["id"] == "u05" and user["email"] == "u05@example.test"
    calendar = next(p for p in user["integrations"] if p["integration"] == "calendar")
    assert calendar["breaker_state"] == "open"
    assert calendar["breaker_next_retry_at"] == stamp(NOW + timedelta(minutes=40))
    stamps = [h["created_at"] for h in user["history"]]
    assert stamps == sorted(stamps, reverse=True)
    rows = [
        m for m in table(db, "sync_metrics")
        if m["user_id"] == "u05" and stamp(NOW - timedelta(days=7)) <= m["created_at"] <= stamp(NOW)
    ]  # fmt: skip
    assert len(user["history"]) == len(rows)
    assert user["history_truncated"] is False


def test_report_of_an_empty_database_has_every_key_and_no_division_by_zero(tmp_path):
    empty = open_database(tmp_path / "empty.db")
    report = build_report(empty, now=NOW, since=timedelta(days=7))
    assert fleet_figures(report) == expected_report(empty, NOW, timedelta(days=7))
    assert report["user"] is None
    assert report["mass_delete_holds"] == []
    assert {api: f["used_in_window"] for api, f in report["quota"]["apis"].items()} == {
        "calendar": 0,
        "people": 0,
    }
    assert report["syncs"]["total"]["success_rate_percent"] is None
    assert report["api_calls"]["total"]["saved_share_percent"] is None
    assert render_prometheus(report)
    empty.close()


def test_unknown_user_is_bad_input(db):
    with pytest.raises(BadInput, match="unknown user 'nobody'"):
        build_report(db, now=NOW, since=timedelta(days=7), user_id="nobody")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * 86400), ("24h", 86400), ("30m", 1800), ("2w", 14 * 86400), ("90s", 90)],
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d", "0d", "-1d", "1y", "1.5h", "7 days", "3661d"])
def test_bad_durations_are_bad_input(text):
    with pytest.raises(BadInput, match="bad duration"):
        parse_duration(text)


# --- the command line: table, JSON, Prometheus -------------------------------------------------


def test_json_output_is_the_report_and_nothing_else(cli, db):
    result = cli("--json", "--since", "7d")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document == json.loads(json.dumps(build_report(db, now=NOW, since=timedelta(days=7))))
    assert fleet_figures(document) == json.loads(
        json.dumps(expected_report(db, NOW, timedelta(days=7)))
    )


def test_format_json_equals_json_flag(cli):
    assert cli("--format", "json").stdout == cli("--json").stdout


def test_json_for_one_user_drills_into_that_user(cli, db):
    document = json.loads(cli("--json", "--user", "u03").stdout)
    assert document["user_id"] == "u03"
    assert document["fleet"]["users"] == 1
    assert document["token_health"]["reconnect_required"][0]["user_id"] == "u03"
    assert [p["token_status"] for p in document["user"]["integrations"]] == ["revoked"] * 2


PROM_LINE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)
PROM_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple, float]:
    """A strict reader of the text exposition format: HELP and TYPE before every family."""
    samples: dict[tuple, float] = {}
    declared: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in declared, f"family {name} declared twice"
            declared[name] = "help"
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert declared.get(name) == "help" and kind == "gauge"
            declared[name] = kind
            continue
        match = PROM_LINE.match(line)
        assert match, f"not an exposition line: {line!r}"
        assert declared.get(match["name"]) == "gauge", f"{match['name']} sampled before TYPE"
        labels = tuple(sorted(PROM_LABEL.findall(match["labels"] or "")))
        key = (match["name"], labels)
        assert key not in samples, f"duplicate series {key}"
        samples[key] = float(match["value"])
    return samples


def test_prometheus_exposition_equals_the_recomputed_figures(cli, db):
    result = cli("--format", "prometheus")
    assert result.exit_code == 0
    assert_prometheus_matches(result.stdout, expected_report(db, NOW, timedelta(days=7)), NOW)


def assert_prometheus_matches(text: str, exp: dict, now: datetime) -> None:
    """Every sample of the exposition equals the recomputed figure it stands for."""
    samples = parse_prometheus(text)

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("syncctl_users") == exp["fleet"]["users"]
    assert value("syncctl_report_window_seconds") == exp["window"]["seconds"]
    assert value("syncctl_report_generated_timestamp_seconds") == now.timestamp()
    assert value("syncctl_users_reconnect_required") == len(
        exp["token_health"]["reconnect_required"]
    )
    for short in KINDS.values():
        syncs = exp["syncs"]["by_integration"][short]
        calls = exp["api_calls"]["by_integration"][short]
        stale = exp["staleness"]["by_integration"][short]
        run = exp["next_run"]["by_integration"][short]
        for status, n in exp["token_health"]["by_integration"][short].items():
            assert value("syncctl_token_health_pairs", integration=short, status=status) == n
        for state, n in exp["breakers"]["by_integration"][short].items():
            assert value("syncctl_circuit_breakers", integration=short, state=state) == n
        for result_ in ("success", "failure", "skipped"):
            assert (
                value("syncctl_window_sync_attempts", integration=short, result=result_)
                == (syncs[result_])
            )
        assert value("syncctl_window_sync_success_ratio", integration=short) == pytest.approx(
            syncs["success"] / (syncs["success"] + syncs["failure"])
        )
        assert value("syncctl_window_full_resyncs", integration=short) == syncs["full_resyncs"]
        assert value("syncctl_window_api_calls_made", integration=short) == calls["made"]
        for mechanism, n in calls["saved_by"].items():
            assert (
                value("syncctl_window_api_calls_saved", integration=short, mechanism=mechanism) == n
            )
        assert value("syncctl_window_api_calls_saved_ratio", integration=short) == pytest.approx(
            calls["saved"] / (calls["made"] + calls["saved"])
        )
        assert value("syncctl_staleness_p50_seconds", integration=short) == stale["p50_seconds"]
        assert value("syncctl_staleness_p95_seconds", integration=short) == stale["p95_seconds"]
        assert value("syncctl_staleness_max_seconds", integration=short) == stale["max_seconds"]
        assert (
            value("syncctl_staleness_never_synced_pairs", integration=short)
            == (stale["never_synced"])
        )
        assert value("syncctl_next_run_due_pairs", integration=short) == run["due"]
        assert (
            value("syncctl_next_run_expected_api_calls", integration=short)
            == (run["expected_api_calls"])
        )


def test_prometheus_for_one_user_labels_every_series_with_the_user(cli):
    samples = parse_prometheus(cli("--format", "prometheus", "--user", "u05").stdout)
    assert samples and all(("user", "u05") in labels for _, labels in samples)


def test_prometheus_omits_ratios_with_nothing_to_divide(tmp_path):
    empty = open_database(tmp_path / "empty.db")
    samples = parse_prometheus(render_prometheus(build_report(empty, now=NOW, since=timedelta(1))))
    assert not any(name.endswith("_ratio") for name, _ in samples)
    assert samples[("syncctl_users", ())] == 0
    empty.close()


def test_table_shows_every_section_with_the_recomputed_figures(cli, db):
    result = cli()
    assert result.exit_code == 0
    exp = expected_report(db, NOW, timedelta(days=7))
    assert_tables_match(result.stdout, exp)
    lines = result.stdout.splitlines()
    since = exp["token_health"]["reconnect_required"][0]["since"]
    assert table_row(lines, "Users who must reconnect", "u07")[2] == (
        f"{since[:10]} {since[11:16]} (2d ago)"
    )
    assert table_row(lines, "Open circuit breakers", "u05")[3] == "transient: HTTP 503"


def table_row(lines: list[str], title: str, first_cell: str) -> list[str]:
    """The cells of the first row starting with first_cell after the table titled title."""
    start = next(i for i, line in enumerate(lines) if title in line)
    found = next(line for line in lines[start:] if re.match(rf"^│ {first_cell}\s", line))
    return [cell.strip() for cell in found.strip("│").split("│")]


def assert_tables_match(out: str, exp: dict, window: str = "7d") -> None:
    """Every figure of the fleet tables equals the recomputed one."""
    lines = out.splitlines()
    tokens, breakers, fleet = exp["token_health"], exp["breakers"], exp["fleet"]
    assert f"{fleet['users']} users, {fleet['users_with_integrations']} with integrations" in out

    def block(section: dict, short: str) -> dict:
        return section["total"] if short == "all" else section["by_integration"][short]

    for short in (*KINDS.values(), "all"):
        pairs, health = block(fleet["integrations"], short), block(tokens, short)
        assert table_row(lines, "Integrations and token health", short)[1:] == [
            str(pairs["enabled"]), str(pairs["active"]),
            *(str(health[s]) for s in ("valid", "expired", "revoked", "unknown")),
        ]  # fmt: skip
        states = block(breakers, short)
        assert table_row(lines, "Circuit breakers", short)[1:] == [
            str(states[s]) for s in ("closed", "open", "half_open")
        ]
        syncs, calls = block(exp["syncs"], short), block(exp["api_calls"], short)
        cells = table_row(lines, f"Syncs, last {window}", short)
        assert cells[1:5] == [str(syncs[k]) for k in ("attempts", "success", "failure", "skipped")]
        rate = syncs["success_rate_percent"]
        assert cells[5] == ("-" if rate is None else f"{rate:g}%")
        assert cells[6] == str(syncs["full_resyncs"])
        cells = table_row(lines, f"Skips and failures, last {window}", short)
        assert cells[1:3] == [str(syncs["skipped_by_reason"][r]) for r in REASONS]
        failing = [c for c in ERROR_CLASSES if exp["syncs"]["total"]["failures_by_class"][c]]
        assert cells[3:] == [str(syncs["failures_by_class"][c]) for c in failing]
        cells = table_row(lines, f"API calls, last {window}", short)
        assert cells[1:7] == [str(calls["made"]), str(calls["saved"])] + [
            str(calls["saved_by"][m]) for m in MECHANISMS
        ]
        share = calls["saved_share_percent"]
        assert cells[7] == ("-" if share is None else f"{share:g}%")
        run = block(exp["next_run"], short)
        assert table_row(lines, "Next run-due", short)[1:] == [
            str(run[k])
            for k in ("due", "will_run", "skip_revoked", "skip_breaker_open", "expected_api_calls")
        ]
    for short, stale in exp["staleness"]["by_integration"].items():
        cells = table_row(lines, "Staleness", short)
        assert [cells[1], cells[6], cells[7]] == [
            str(stale["pairs"]), str(stale["overdue"]), str(stale["never_synced"])
        ]  # fmt: skip
        worst = [
            table_row(lines, "Stalest pairs", f"{short}.*│ {w['user_id']}")[1]
            for w in stale["worst"]
        ]
        assert worst == [w["user_id"] for w in stale["worst"]]
    for user in tokens["reconnect_required"]:
        assert table_row(lines, "Users who must reconnect", user["user_id"])[1] == (
            ",".join(user["integrations"]) or "-"
        )
    for opened in breakers["open"]:
        cells = table_row(lines, "Open circuit breakers", opened["user_id"])
        assert cells[1:3] == [opened["integration"], str(opened["failure_count"])]


def test_user_table_shows_the_users_history(cli):
    result = cli("--user", "u05")
    assert result.exit_code == 0
    assert "User u05 <u05@example.test>" in result.stdout
    assert "History, newest first" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "7x"], "bad duration '7x'"),
        (["--user", "nobody"], "unknown user 'nobody'"),
        (["--format", "xml"], "unknown format 'xml'"),
        (["--json", "--format", "prometheus"], "cannot be combined"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_html_option_writes_only_the_page_unless_a_format_is_asked(cli, tmp_path):
    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()
    result = cli("--html", str(page))
    assert result.exit_code == 0 and result.stdout == ""
    assert page.read_text().startswith("<!DOCTYPE html>")
    both = cli("--html", str(page), "--json")
    assert json.loads(both.stdout)["report_version"] == 1


def test_html_to_an_unwritable_place_is_bad_input(cli, tmp_path):
    result = cli("--html", str(tmp_path / "missing-dir" / "r.html"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr
