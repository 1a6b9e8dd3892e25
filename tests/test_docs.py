"""Every command has help with an example, and README.md documents it."""

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from syncctl.cli import app

README = (Path(__file__).parent.parent / "README.md").read_text()


def command_paths() -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []

    def walk(command, prefix: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            paths.append(prefix)
            return
        for name, sub in subcommands.items():
            walk(sub, (*prefix, name))

    walk(typer.main.get_command(app), ())
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_command_has_help_with_an_example(path):
    result = CliRunner().invoke(app, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "Example:" in result.stdout


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_command_is_documented_in_readme(path):
    assert f"syncctl {' '.join(path)}" in README


def test_readme_starts_with_the_two_setup_commands():
    commands = [line.strip() for line in README.splitlines() if line.startswith("    ")][:2]
    assert commands[0].endswith("syncctl demo")
    assert commands[1].endswith("python -m pytest")
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert commands[1] in ci
