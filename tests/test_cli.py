"""The one `simedge` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.cli import COMMANDS, build_parser
from tests.child import python_output

ROOT = Path(__file__).resolve().parents[1]


def simedge(*argv: str) -> subprocess.CompletedProcess[str]:
    """``simedge ARGV`` as a child process (``python -m agent.cli``), its output kept."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )


def test_help_lists_every_command_with_one_line() -> None:
    result = simedge("--help")
    assert result.returncode == 0, result.stderr
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
    result = simedge()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


def test_the_agent_loads_no_other_commands_module() -> None:
    # `simedge run` builds the parser of `run` alone: the agent must not carry the emulated
    # modems (whose names `simedge emulate`'s parser lists) nor the dashboard.
    code = (
        "import sys\n"
        "from agent.cli import build_parser\n"
        "args = build_parser('run').parse_args(['run', '--config', 'site.toml'])\n"
        "import agent.supervisor\n"
        "print(args.handler.__module__)\n"
        "print(' '.join(sorted(m for m in sys.modules\n"
        "    if m.startswith(('agent.cli.', 'agent.emulate', 'textual', 'tui')))))\n"
    )
    handler, loaded = python_output(code).splitlines()
    assert handler == "agent.cli.run"
    assert loaded == "agent.cli.run"


def test_an_unknown_command_is_refused_with_every_command_listed() -> None:
    result = simedge("runn")
    assert result.returncode == 2
    assert "invalid choice: 'runn'" in result.stderr
    for name in COMMANDS:
        assert f"'{name}'" in result.stderr


def test_a_command_alone_parses_as_in_the_whole_parser() -> None:
    argv = ["emulate", "modems", "--count", "3", "--dir", "hub", "--profile", "sim800"]
    alone, whole = build_parser("emulate").parse_args(argv), build_parser().parse_args(argv)
    assert vars(alone) == vars(whole)
    assert alone.count == 3


def test_an_emulated_network_slow_over_ussd_takes_only_a_duration(tmp_path: Path) -> None:
    # --ussd-delay: how long the emulated network takes over a USSD question (chaos
    # ussdwait); a typo is refused naming the option and the value, before any pty exists.
    for typo in ("-1", "nan", "20s"):
        result = simedge("emulate", "modems", "--dir", str(tmp_path), "--ussd-delay", typo)
        assert result.returncode == 2
        assert "argument --ussd-delay: expected" in result.stderr
        assert repr(typo) in result.stderr
    assert not any(tmp_path.iterdir())
