"""Pictures of the main screens at 80x24 and at 160x50, compared with the stored SVGs.

Regenerate after an intended change with ``pytest tests/tui/test_snapshots.py
--snapshot-update`` and look at the pictures before committing them. The clock is frozen
(tests.tui.site.NOW) and the cursor does not blink in tests, so the pictures are stable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.pilot import make_app, until
from tests.tui.site import SiteStandIn, demo_messages, demo_site, site_in_thread
from tui.app import SimedgeApp


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    socket_path = tmp_path / "control.sock"
    with site_in_thread(socket_path, SiteStandIn(demo_site(), demo_messages())):
        yield socket_path


def live(app: SimedgeApp):
    async def wait(pilot: Pilot[None]) -> None:
        # Live data drawn, and the focus settled (the focused table draws its cursor row
        # in another colour: a picture taken before that differs).
        await until(pilot, lambda: app.view.live and app.focused is not None)
        await pilot.pause()

    return wait


SCREENS = {
    "overview": (),
    "messages": ("2",),
    "outbox": ("3",),
    "takeoff": ("4",),
    "charts": ("5",),
    "log": ("6",),
    # "sims" draws rows that arrive after the key (a request of their own): it is read
    # with the pilot and in tmux instead (tests/tui/test_sims.py).
}


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, served: Path, screen: str, size: tuple[int, int]) -> None:
    app = make_app(served)
    press = (*SCREENS[screen], "_")
    assert snap_compare(app, press=press, terminal_size=size, run_before=live(app))


def test_agent_down(snap_compare) -> None:
    # Fixed paths that do not exist: the header quotes them, so the picture stays the same.
    app = make_app(Path("/nonexistent/simedge/control.sock"), Path("/nonexistent/simedge.db"))

    async def offline(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: app.updates)

    assert snap_compare(app, terminal_size=(80, 24), run_before=offline)
