"""The one `simedge` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    for name in COMMANDS:
        lines = [line for line in result.stdout.splitlines() if line.strip().startswith(name + " ")]
        assert lines, f"{name} missing from --help"


def test_every_command_has_a_one_line_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name in COMMANDS:
        helps = {a.dest: a.help for a in subparsers._choices_actions}
        assert helps[name]
        assert "\n" not in helps[name]


def test_no_command_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "COMMAND" in result.stderr
