"""Seen as a person would: ``simedge tui`` in a real 80x24 terminal (tmux), read back
with capture-pane."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui import tmux
from tests.tui.site import SiteStandIn, demo_messages, demo_site, site_in_thread

pytestmark = pytest.mark.skipif(
    not tmux.available(), reason="tmux is not installed (.ci/run installs it as root)"
)


def test_a_person_sees_the_site_and_can_move_around(tmp_path: Path) -> None:
    socket_path = tmp_path / "control.sock"
    with site_in_thread(socket_path, SiteStandIn(demo_site(), demo_messages())):
        session = tmux.Tmux(tmux.tui_command(socket_path, tmp_path / "simedge.db"))
        try:
            screen = session.wait_for("● live")
            lines = screen.splitlines()
            assert len(lines) <= 24
            assert all(len(line) <= 80 for line in lines)
            assert "uplink ● ok" in screen
            assert "A3        ▲ recovering" in screen
            assert "✖ failed" in screen
            assert "q Quit" in lines[-1]
            session.send("2")
            screen = session.wait_for("Google")
            # The hostile SMS arrives on the real terminal as text; its ESC sequences did
            # not clear the screen or retitle the window.
            assert "[bold red]PWNED[/]" in screen
            assert "␛[2J" in screen
            assert "VKcom" in screen
            session.send("q")
        finally:
            session.close()


def test_agent_down_is_said_plainly(tmp_path: Path) -> None:
    session = tmux.Tmux(tmux.tui_command(tmp_path / "none.sock", tmp_path / "none.db"))
    try:
        screen = session.wait_for("AGENT DOWN")
        assert "the agent is not running" in screen
    finally:
        session.close()


def test_the_dashboard_login_needs_no_access_to_the_secrets(tmp_path: Path) -> None:
    # As the dashboard user of deploy/ssh: simedge.toml readable, the key files not.
    config = tmp_path / "simedge.toml"
    config.write_text(
        '[onlinesim]\nbase_url = "http://127.0.0.1:9/api"\n'
        f'api_key_file = "{tmp_path / "secret" / "api_key"}"\n'
        f'[webhook]\ntoken_file = "{tmp_path / "secret" / "token"}"\n'
        f'[site]\ndata_dir = "data"\n[control]\nsocket = "{tmp_path / "none.sock"}"\n'
    )
    session = tmux.Tmux([str(tmux.SIMEDGE), "tui", "--config", str(config)])
    try:
        screen = session.wait_for("AGENT DOWN")
        assert "none.sock" in screen
    finally:
        session.close()
