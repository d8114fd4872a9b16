"""What `stashq --help`, each command's help and `--version` show a new user: summaries
whole, no reStructuredText markup, every option explained."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest

from beat.cli import main

STASHQ = str(Path(sys.executable).with_name("stashq"))


def stashq(*args: str) -> str:
    result = subprocess.run([STASHQ, *args], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_version() -> None:
    assert stashq("--version") == f"stashq {version('stashq')}\n"


def test_command_summaries_are_whole_sentences() -> None:
    listing = stashq("--help").split("Commands:\n")[1].splitlines()
    assert sorted(line.split()[0] for line in listing) == sorted(main.commands)
    for line in listing:
        assert not line.endswith("...") and line.endswith("."), line


@pytest.mark.parametrize("command", sorted(main.commands))
def test_help_has_no_markup_and_explains_every_option(command: str) -> None:
    text = stashq(command, "--help")
    assert "``" not in text and "`" not in text, text
    unexplained = [p.name for p in main.commands[command].params
                   if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert unexplained == [], f"{command}: options without help: {unexplained}"
