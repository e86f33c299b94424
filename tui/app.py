"""The dashboard application, built by :func:`create_app` (tests build it the same way).

The app owns the site's state (:attr:`SimedgeApp.view`) and the link to the agent
(:attr:`SimedgeApp.link`, followed in one exclusive worker). Screens are Textual modes,
one per task; only the screen in front is redrawn when the state changes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding

from agent.control.protocol import AddBlockRule, Request
from agent.errors import ControlError
from tui.client import AgentLink, SiteChanged
from tui.screens.base import SiteScreen
from tui.screens.charts import ChartsScreen
from tui.screens.dialogs import BlockRuleProposal, ConfirmDialog
from tui.screens.log import LogScreen
from tui.screens.messages import MessagesScreen
from tui.screens.outbox import OutboxScreen
from tui.screens.overview import OverviewScreen, SlotDetailScreen
from tui.screens.sims import SimsScreen
from tui.screens.takeoff import TakeoffScreen
from tui.view import SiteView
from tui.widgets.header import TABS

AGE_TICK = 5.0  # seconds between redraws of the ages ("last SMS 3m") when nothing happens


class SimedgeApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "simedge"
    ENABLE_COMMAND_PALETTE = False
    MODES = {  # noqa: RUF012  (Textual's declaration style)
        "overview": OverviewScreen,
        "messages": MessagesScreen,
        "outbox": OutboxScreen,
        "takeoff": TakeoffScreen,
        "charts": ChartsScreen,
        "log": LogScreen,
        "sims": SimsScreen,
    }
    BINDINGS = [  # noqa: RUF012
        *(
            Binding(key, f"switch_mode('{mode}')", title, show=False)
            for key, mode, title in TABS  # the same tabs the header's tab line shows
        ),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, link: AgentLink, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.link = link
        self.clock = clock
        self.view = SiteView(now=clock())
        self.traced_slots: set[str] = set()
        self.updates = 0  # SiteChanged handled: tests wait on it, the benchmark counts it

    def on_mount(self) -> None:
        self.switch_mode("overview")
        self.follow_agent()
        self.set_interval(AGE_TICK, self._tick)

    @work(exclusive=True, group="agent-link")
    async def follow_agent(self) -> None:
        await self.link.follow(self.post_message)

    def on_site_changed(self, message: SiteChanged) -> None:
        self.view = SiteView(
            snapshot=message.snapshot,
            live=message.live,
            problem=message.problem,
            now=self.clock(),
        )
        self._redraw()
        if isinstance(self.screen, MessagesScreen) and message.messages_changed:
            self.screen.load()
        self.updates += 1

    def _tick(self) -> None:
        self.view = dataclasses.replace(self.view, now=self.clock())
        self._redraw()

    def _redraw(self) -> None:
        screen = self.screen
        if isinstance(screen, SiteScreen | SlotDetailScreen):
            screen.show(self.view)

    def act(self, request: Request[Any], done: str) -> None:
        """Send an action to the agent; the answer (or the refusal) is notified."""
        self._act(request, done)

    @work(group="actions")
    async def _act(self, request: Request[Any], done: str) -> None:
        try:
            await self.link.call(request)
        except ControlError as exc:
            self.notify(str(exc), title=f"{request.OP} failed", severity="error", markup=False)
            return
        self.notify(done, markup=False)

    def propose_block_rule(
        self, proposal: BlockRuleProposal | None, then: Callable[[], object] | None = None
    ) -> None:
        """Add a rule the agent checked (BlockRuleDialog); one that would have withheld
        most recent SMS is asked about a second time. ``then`` runs after it is added."""
        if proposal is None:
            return
        if not proposal.trial.withholds_most:
            self._add_block_rule(proposal.adding(force=False), then)
            return
        question = (
            f"Rule {proposal.rule.name!r} {proposal.trial.summary}.\n"
            "Most SMS would stay on site and never be sold. Add it anyway?"
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._add_block_rule(proposal.adding(force=True), then)

        self.push_screen(ConfirmDialog(question), answered)

    @work(group="actions")
    async def _add_block_rule(self, rule: AddBlockRule, then: Callable[[], object] | None) -> None:
        try:
            done = await self.link.call(rule)
        except ControlError as exc:
            self.notify(str(exc), title="block rule refused", severity="error", markup=False)
            return
        self.notify(str(done), markup=False)
        if then is not None:
            then()


def create_app(
    socket_path: str | Path,
    db_path: str | Path | None = None,
    *,
    clock: Callable[[], float] = time.time,
    min_interval: float = 0.25,
    retry_delays: tuple[float, ...] | None = None,
) -> SimedgeApp:
    """The dashboard for the agent listening on ``socket_path``; ``db_path`` is read
    (read-only) for the last known state when the agent is down."""
    link_options: dict[str, Any] = {"min_interval": min_interval}
    if retry_delays is not None:
        link_options["retry_delays"] = retry_delays
    return SimedgeApp(AgentLink(socket_path, db_path, **link_options), clock=clock)
