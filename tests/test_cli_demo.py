"""`syncctl demo` and `syncctl simulate` from the command line."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.simulation.stage import scratch_directory

REPORT_SECTIONS = (
    "Integrations and token health",
    "Circuit breakers",
    "Users who must reconnect",
    "Open circuit breakers",
    "Syncs, last 3d",
    "API calls, last 3d",
    "Staleness",
)


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.delenv("SYNCCTL_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("SYNCCTL_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def test_demo_as_a_new_user_runs_it_prints_the_report_and_keeps_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    scratch = tmp_path / "tmp"  # this demo's own: other demos may be running on the machine
    scratch.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TMPDIR": str(scratch),
    }
    script = Path(sys.executable).with_name("syncctl")
    done = subprocess.run(
        [str(script), "demo"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    for section in REPORT_SECTIONS:
        assert section in done.stdout
    assert "demo-02" in done.stdout  # the revoked user must reconnect
    assert "demo-03" in done.stdout  # the failing user's breaker is open
    progress = done.stderr.splitlines()
    assert [line.split(" (")[0] for line in progress if line.startswith("day ")] == [
        "day 1/3",
        "day 2/3",
        "day 3/3",
    ]
    assert any("demo-02's grant revoked at Google" in line for line in progress)
    assert any("demo-03 fails with 503" in line for line in progress)
    assert list(home.rglob("*")) == []
    assert list(scratch.iterdir()) == []


def test_demo_with_db_keeps_a_database_the_report_can_read(run, tmp_path):
    db = tmp_path / "demo.db"
    result = run("--db", str(db), "demo", "--users", "4", "--days", "1")
    assert result.exit_code == 0
    assert f"database kept at {db}" in result.stderr
    conn = sqlite3.connect(db)
    try:
        users = [row[0] for row in conn.execute("SELECT id FROM users ORDER BY id")]
        attempts = conn.execute("SELECT count(*) FROM sync_metrics").fetchone()[0]
    finally:
        conn.close()
    assert users == ["demo-01", "demo-02", "demo-03", "demo-04"]
    assert attempts > 0
    report = run("--db", str(db), "report", "--since", "2d", "--json")
    assert json.loads(report.stdout)["fleet"]["users"] == 4


def test_demo_refuses_a_db_that_already_exists_and_leaves_it_untouched(run, tmp_path):
    db = tmp_path / "fleet.db"
    db.write_bytes(b"precious")
    result = run("--db", str(db), "demo")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "already exists" in result.stderr
    assert db.read_bytes() == b"precious"


def test_demo_ignores_syncctl_db_from_the_environment(run, tmp_path, monkeypatch):
    target = tmp_path / "from-env.db"
    monkeypatch.setenv("SYNCCTL_DB", str(target))
    result = run("demo", "--users", "4", "--days", "1", "--json")
    assert result.exit_code == 0
    assert not target.exists()
    assert "SYNCCTL_DB is ignored" in result.stderr
    report = json.loads(result.stdout)
    assert report["fleet"]["users"] == 4
    assert report["api_calls"]["total"]["made"] > 0


def test_simulate_json_compares_every_policy_on_the_same_fleet(run):
    result = run("simulate", "--users", "4", "--days", "1", "--workers", "1", "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    names = [p["policy"] for p in document["policies"]]
    assert names[:2] == ["naive", "orchestrated"]
    assert {"webhooks", "no_breaker", "no_adaptive", "no_token_gate"} <= set(names)
    assert len({p["script_fingerprint"] for p in document["policies"]}) == 1
    assert {m["mechanism"] for m in document["mechanisms"]} == {
        "circuit_breaker",
        "adaptive_schedule",
        "token_health",
        "webhook",
    }
    assert document["scenario"]["users"] == 4
    assert "simulate: naive:" in result.stderr


def test_simulate_prints_its_tables(run):
    result = run("simulate", "--users", "4", "--days", "1", "--workers", "1")
    assert result.exit_code == 0
    for title in ("API calls by policy", "By user profile: naive -", "Savings by mechanism"):
        assert title in result.stdout
    assert "Staleness: change at Google" in result.stdout
    assert "the report claimed" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--users", "2"),
        ("--days", "0"),
        ("--step", "0m"),
        ("--step", "soon"),
        ("--scenario", "flood"),
    ],
)
def test_simulate_bad_options_exit_2_with_one_line(run, args):
    result = run("simulate", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("syncctl")
    assert result.stdout == ""


def test_the_demos_scratch_directory_is_made_in_tmpdir_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with scratch_directory("syncctl-demo-") as directory:
        assert directory.parent == tmp_path
        (directory / "demo.db").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []
