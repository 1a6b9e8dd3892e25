"""A hostile tester, generated: random arguments, config files and environment, driven through
the real CLI. Whatever comes in, syncctl exits 0, 1, 2 or 4, never shows a traceback, prints
exactly one line on stderr when it exits 2, and leaves the database byte for byte as it was
(and creates no file) when it refuses.

Small in CI (SYNCCTL_PROPERTY_EXAMPLES, default 40); raise it to hunt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from syncctl.cli import app
from syncctl.clock import utcnow
from syncctl.config import CONFIG_FILE_KEYS
from syncctl.config import Settings as SyncctlSettings
from syncctl.store import open_database
from syncctl.users import add_user, parse_credentials

EXAMPLES = int(os.environ.get("SYNCCTL_PROPERTY_EXAMPLES", "40"))
GRANT = {"client_id": "c.apps", "client_secret": "s-1", "refresh_token": "r-1"}
USERS = ("u1", "u2")
# Google is never reached: every user is scheduled far ahead, and the endpoint refuses fast.
DEAD_ENDPOINT = "http://127.0.0.1:9"
# Commands that run for long or serve until stopped are only generated with a refused option.
LONG_RUNNING = {"demo", "simulate", "fake-google", "webhook", "run-due", "sync", "health"}

# -- what the tester types -------------------------------------------------------------------

# No NUL: neither argv nor the environment can hold one.
junk = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "1", "-1", "65536", "70000", "2.5", "1e308", "nan", "0x10", ""]),
)
user_ids = st.one_of(st.sampled_from([*USERS, "ghost", "", " ", "u1\n"]), junk)
integrations = st.one_of(
    st.sampled_from(["contacts", "calendar", "all", "google_calendar", "both", ",", ""]), junk
)
durations = st.one_of(st.sampled_from(["7d", "0d", "30m", "99999999999999999999d", "7"]), junk)
db_paths = st.sampled_from(["", ".", "missing.db", "sub/dir/x.db", "plain/x.db", "foreign.db"])

commands = st.one_of(
    st.tuples(st.just("run-due"), st.just("--dry-run")).map(list),
    st.lists(
        st.sampled_from(["--limit", "--concurrency"]).flatmap(
            lambda o: st.tuples(st.just(o), numbers)
        ),
        max_size=2,
    ).map(lambda pairs: ["run-due", "--dry-run", *[x for p in pairs for x in p]]),
    st.tuples(st.just("run-due"), st.just("--limit"), numbers).map(list),
    user_ids.map(lambda u: ["sync", "--user", u if u not in USERS else "ghost"]),
    st.tuples(integrations).map(lambda i: ["sync", "--user", "ghost", "--integration", i[0]]),
    user_ids.map(lambda u: ["health", "--user", u]),
    st.just(["health", "--json"]),
    st.just(["breaker", "list", "--json"]),
    st.just(["breaker", "reset", "--all"]),
    st.just(["breaker", "reset"]),
    st.tuples(user_ids, integrations).map(
        lambda t: ["breaker", "reset", "--user", t[0], "--integration", t[1]]
    ),
    durations.map(lambda d: ["report", "--since", d]),
    st.sampled_from(["table", "json", "prometheus", "xml", ""]).map(
        lambda f: ["report", "--format", f]
    ),
    st.just(["user", "list", "--json"]),
    user_ids.map(lambda u: ["user", "remove", "ghost" if u in USERS else u]),
    st.tuples(user_ids, integrations).map(
        lambda t: ["user", "add", t[0], "--credentials", "bad.json", "--integrations", t[1]]
    ),
    numbers.map(lambda n: ["fake-google", "serve", "--port", n, "--users", "-1"]),
    numbers.map(lambda n: ["webhook", "serve", "--port", n, "--host", "256.0.0.1"]),
    st.lists(junk, max_size=3).filter(lambda a: not a or a[0] not in LONG_RUNNING),
    st.just([]),
    st.just(["--version"]),
)

toml_values = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(f), repr(f))
    ),
    st.booleans().map(lambda b: str(b).lower()),
    junk.map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(['"http://"', '"http://127.0.0.1:notaport"', '"https://x:70000"', "[1, 2]"]),
)
config_files = st.one_of(
    st.just(None),
    st.binary(max_size=40),
    st.dictionaries(
        st.one_of(
            st.sampled_from(sorted(CONFIG_FILE_KEYS)),
            st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
        ),
        toml_values,
        max_size=3,
    ).map(lambda d: "".join(f"{k} = {v}\n" for k, v in d.items()).encode()),
)
environments = st.fixed_dictionaries(
    {},
    optional={
        "SYNCCTL_GOOGLE_ENDPOINT": st.one_of(
            st.sampled_from(["http://", "http://127.0.0.1:notaport", "ftp://x", "x"]), junk
        ),
        "SYNCCTL_WEBHOOK_URL": junk,
        "SYNCCTL_DB": db_paths,
        "SYNCCTL_SECRET_KEY": st.one_of(junk, st.just("A" * 43 + "=")),  # wrong or malformed
    },
)


# -- the world they type into ----------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fleet whose pairs are all scheduled far ahead (no Google call is due)."""
    folder = tmp_path_factory.mktemp("template")
    db = open_database(folder / "syncctl.db")
    for user in USERS:
        add_user(db, SyncctlSettings(), user, parse_credentials(GRANT), now=utcnow())
    db.conn.execute("UPDATE sync_schedule SET next_sync_at = '2999-01-01T00:00:00+00:00'")
    db.close()
    (folder / "bad.json").write_text('{"type": "service_account"}')
    (folder / "foreign.db").write_bytes(b"SQLite format 3\x00" + bytes(200))
    (folder / "plain").write_text("a file, not a folder")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=commands,
    db=st.one_of(st.none(), db_paths),
    config=config_files,
    extra_env=environments,
)
def test_any_invocation_exits_0_1_2_or_4_and_a_refusal_changes_nothing(
    template: Path, command: list[str], db: str | None, config: bytes | None, extra_env: Any
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="syncctl-property-"))
    cwd = os.getcwd()
    try:
        shutil.copytree(template, folder, dirs_exist_ok=True)
        env = {k: "" for k in os.environ if k.startswith("SYNCCTL_") and k != "SYNCCTL_SECRET_KEY"}
        env |= {
            "XDG_DATA_HOME": str(folder / "data"),
            "XDG_CONFIG_HOME": str(folder / "config"),
            "SYNCCTL_DB": str(folder / "syncctl.db"),
            "SYNCCTL_GOOGLE_ENDPOINT": DEAD_ENDPOINT,
            "SYNCCTL_CONFIG": "",
        }
        env |= extra_env
        if config is not None:
            (folder / "given.toml").write_bytes(config)
            env["SYNCCTL_CONFIG"] = str(folder / "given.toml")
        args = (["--db", db] if db is not None else []) + command
        os.chdir(folder)  # relative paths land in the example's own folder
        before = snapshot(folder)

        result = CliRunner().invoke(app, args, env=env, catch_exceptions=True)

        shown = f"syncctl {args!r} env {extra_env!r}:\n{result.stdout}\n{result.stderr}"
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{shown}\n{result.exception!r}"
        )
        assert result.exit_code in (0, 1, 2, 4), shown
        assert "Traceback" not in result.stdout + result.stderr, shown
        if result.exit_code == 2:
            assert len(result.stderr.splitlines()) == 1, shown
            assert snapshot(folder) == before, shown  # nothing changed, nothing created
    finally:
        os.chdir(cwd)
        shutil.rmtree(folder, ignore_errors=True)
