"""The mass-delete guard and the quota budget through the installed `syncctl` command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_sync import Cli

from syncctl.fakegoogle import FakeGoogle


@pytest.fixture
def cli(tmp_path: Path, fake_google: FakeGoogle) -> Iterator[Cli]:
    runner = Cli(tmp_path, fake_google)
    yield runner
    assert runner.leaks() == []


def held_contacts(cli: Cli) -> None:
    """ann's 40 contacts mirrored, then 30 deleted at Google, and the pair due."""
    cli.new_user("ann", "contacts", contacts=40)
    cli.run_due_in_process()
    for name in sorted(cli.fake.contacts("ann"))[:30]:
        cli.fake.delete_contact("ann", name)
    cli.make_due("ann")


def test_under_cron_a_held_sync_is_one_line_saying_how_to_act(cli: Cli):
    held_contacts(cli)

    ran = cli("run-due")  # a hold is not a failure: exit 0

    assert ran.stdout == ""
    assert ran.stderr.splitlines() == [
        "syncctl run-due: 1 attempts, 0 succeeded, 0 failed, 1 skipped;"
        " 1 sync(s) held by the mass-delete guard",
        "held: ann contacts: held: the sync would delete 30 of 40 mirrored contacts (run"
        " `syncctl sync --user ann --integration contacts --allow-mass-delete` to apply,"
        " or `--full` to re-fetch)",
    ]


def test_sync_exits_4_while_held_and_applies_with_allow_mass_delete(cli: Cli):
    held_contacts(cli)
    cli.run_due_in_process()

    held = cli("sync", "--user", "ann", code=4)
    refetched = cli("sync", "--user", "ann", "--full", code=4)
    applied = cli("sync", "--user", "ann", "--allow-mass-delete")

    assert "mass_delete_held" in held.stderr
    assert "--allow-mass-delete" in held.stderr
    assert "would delete 30 of 40" in refetched.stderr
    assert applied.code == 0
    assert cli.sql("SELECT count(*) FROM contacts WHERE user_id = 'ann'") == [(10,)]
    assert cli.sql("SELECT count(*) FROM mass_delete_holds") == [(0,)]
