"""The dashboard never outlives its terminal: without one it refuses in one line, and it
ends when its terminal goes away (SIGHUP) or when its stdin hangs up without a SIGHUP.
A real process on a real terminal (tmux, or a pty of our own) each time."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.tui import NO_TERMINAL
from tests.tui import tmux

SIMEDGE = Path(sys.executable).with_name("simedge")


def _ends_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` ends within ``seconds``: a pidfd becomes readable when it does."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], seconds)
        return bool(readable)
    finally:
        os.close(pidfd)


def test_without_a_terminal_it_refuses_in_one_plain_line(tmp_path: Path) -> None:
    # What `ssh -T dashboard@site` or `ssh dashboard@site some-command` gives it: pipes.
    result = subprocess.run(
        [SIMEDGE, "tui", "--socket", tmp_path / "none.sock", "--db", tmp_path / "none.db"],
        stdin=subprocess.PIPE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == NO_TERMINAL + "\n"


@pytest.mark.skipif(not tmux.available(), reason="tmux is not installed")
def test_it_ends_when_its_terminal_goes_away(tmp_path: Path) -> None:
    session = tmux.Tmux(tmux.tui_command(tmp_path / "none.sock", tmp_path / "none.db"))
    try:
        session.wait_for("AGENT DOWN")
        pid = int(
            subprocess.run(
                ["tmux", "display-message", "-p", "-t", session.name, "#{pane_pid}"],
                check=True,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
        )
    finally:
        session.close()  # tmux closes the pane's terminal: SIGHUP to the dashboard
    assert _ends_within(pid, 15.0), "the dashboard outlived its terminal"


def test_it_ends_when_stdin_hangs_up_without_a_sighup(tmp_path: Path) -> None:
    # A terminal that is not the process's controlling one: closing its other side sends
    # no SIGHUP, only a hangup on stdin.
    controller, terminal = os.openpty()
    dashboard = subprocess.Popen(
        [SIMEDGE, "tui", "--socket", tmp_path / "none.sock", "--db", tmp_path / "none.db"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,  # where Textual draws
        start_new_session=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(terminal)
    try:
        # Started: the dashboard switched the terminal to its full screen (escape codes
        # split the words on the screen, so those are not searched in the raw output).
        drawn = b""
        while b"\x1b[?1049h" not in drawn:
            readable, _, _ = select.select([controller], [], [], 30.0)
            assert readable, "the dashboard never drew"
            drawn += os.read(controller, 1 << 16)
        assert dashboard.poll() is None
        os.close(controller)
        controller = -1
        assert dashboard.wait(timeout=15) != 0
    finally:
        if controller >= 0:
            os.close(controller)
        if dashboard.poll() is None:
            dashboard.kill()
            dashboard.wait(timeout=10)
