import json
import sqlite3

import pytest
from typer.testing import CliRunner

from syncctl.cli import app

GRANT = {
    "type": "authorized_user",
    "client_id": "client-1.apps",
    "client_secret": "secret-value-1",
    "refresh_token": "refresh-value-1",
}


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCCTL_DB", str(tmp_path / "t.db"))
    monkeypatch.setenv("SYNCCTL_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def grant_file(tmp_path):
    path = tmp_path / "grant.json"
    path.write_text(json.dumps(GRANT))
    return path


def table_rows(tmp_path, sql):
    conn = sqlite3.connect(tmp_path / "t.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_user_add_then_list_json(run, grant_file):
    assert (
        run("user", "add", "u1", "--credentials", str(grant_file), "--email", "a@x.test").exit_code
        == 0
    )
    result = run("user", "list", "--json")
    assert json.loads(result.stdout)["users"][0] == {
        "id": "u1",
        "email": "a@x.test",
        "created_at": json.loads(result.stdout)["users"][0]["created_at"],
        "integrations": ["calendar", "contacts"],
    }


def test_user_add_with_one_integration_creates_only_that_schedule(run, grant_file, tmp_path):
    run("user", "add", "u1", "--credentials", str(grant_file), "--integrations", "calendar")
    assert table_rows(tmp_path, "SELECT integration_type FROM sync_schedule") == [
        ("google_calendar",)
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "is not JSON"),
        ('{"type": "service_account"}', "expected 'authorized_user'"),
        ('{"client_id": "a", "client_secret": "b"}', "'refresh_token' is missing"),
        ("[]", "must be a JSON object"),
    ],
)
def test_malformed_credentials_exit_2_with_one_line_and_write_nothing(
    run, tmp_path, content, expected
):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = run("user", "add", "u1", "--credentials", str(path))
    assert result.exit_code == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.db").exists()


def test_reconnect_resets_health_breaker_and_resolves_notice(run, grant_file, tmp_path):
    run("user", "add", "u1", "--credentials", str(grant_file))
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("UPDATE token_health SET status = 'revoked'")
    conn.execute("UPDATE circuit_breaker_state SET state = 'open', failure_count = 3")
    conn.execute(
        "INSERT INTO notifications (user_id, kind, message, created_at)"
        " VALUES ('u1', 'reconnect_required', 'm', 'x')"
    )
    conn.commit()
    conn.close()
    assert "reconnected" in run("user", "add", "u1", "--credentials", str(grant_file)).stdout
    assert set(table_rows(tmp_path, "SELECT status FROM token_health")) == {("unknown",)}
    assert set(table_rows(tmp_path, "SELECT state, failure_count FROM circuit_breaker_state")) == {
        ("closed", 0)
    }
    assert table_rows(tmp_path, "SELECT resolved_at IS NOT NULL FROM notifications") == [(1,)]


def test_secrets_never_printed(run, grant_file):
    outputs = [
        run("user", "add", "u1", "--credentials", str(grant_file)),
        run("user", "list"),
        run("user", "list", "--json"),
    ]
    for result in outputs:
        for secret in (GRANT["client_secret"], GRANT["refresh_token"]):
            assert secret not in result.stdout + result.stderr


def test_import_is_idempotent_and_keeps_revoked_verdicts(run, tmp_path):
    lines = [
        json.dumps({"id": f"u{i}", "credentials": {**GRANT, "refresh_token": f"r{i}"}})
        for i in range(3)
    ]
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert "3 new" in run("user", "import", str(path)).stdout
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("UPDATE token_health SET status = 'revoked' WHERE user_id = 'u1'")
    conn.commit()
    conn.close()
    assert "0 new" in run("user", "import", str(path)).stdout
    assert table_rows(tmp_path, "SELECT count(*) FROM users") == [(3,)]
    assert table_rows(
        tmp_path, "SELECT DISTINCT status FROM token_health WHERE user_id = 'u1'"
    ) == [("revoked",)]


def test_import_reports_bad_lines_by_number_and_imports_nothing(run, tmp_path):
    good = json.dumps({"id": "u1", "credentials": GRANT})
    path = tmp_path / "users.jsonl"
    path.write_text(f"{good}\nnot json\n{json.dumps({'id': 'u2'})}\n")
    result = run("user", "import", str(path))
    assert result.exit_code == 2
    assert f"{path}:2: not JSON" in result.stderr
    assert f"{path}:3: missing 'credentials'" in result.stderr
    assert not (tmp_path / "t.db").exists()  # a refused import creates no database


def test_remove_unknown_user_exits_2(run, grant_file):
    run("user", "add", "u1", "--credentials", str(grant_file))
    result = run("user", "remove", "ghost")
    assert result.exit_code == 2
    assert "unknown user 'ghost'" in result.stderr


def test_remove_purge_deletes_synced_data(run, grant_file, tmp_path):
    run("user", "add", "u1", "--credentials", str(grant_file))
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("INSERT INTO contacts (user_id, resource_name) VALUES ('u1', 'people/c1')")
    conn.commit()
    conn.close()
    assert run("user", "remove", "u1", "--purge").exit_code == 0
    assert table_rows(tmp_path, "SELECT count(*) FROM contacts") == [(0,)]
    assert table_rows(tmp_path, "SELECT count(*) FROM sync_schedule") == [(0,)]
