"""The dashboard against the real agent on emulated modems (tests/e2e's site)."""

from __future__ import annotations

from textual.widgets import DataTable

from tests.e2e.site import StartSite
from tests.tui.pilot import cell, column, until
from tui.app import create_app
from tui.widgets.slots import SlotTable


async def test_overview_messages_and_actions_on_the_real_agent(start_site: StartSite) -> None:
    site = await start_site(count=2, profile="sim800")
    await site.ready_modems(2)
    app = create_app(
        site.config.control_socket,
        site.config.database,
        min_interval=0.05,
        retry_delays=(0.1,),
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live, within=10)
        table = app.screen.query_one(SlotTable)
        await until(pilot, lambda: len(table.rows) == 2)
        assert column(table, "modem") == ["● ready", "● ready"]
        first_slot = str(next(iter(table.rows)).value)

        site.hub.inject(0, "VKcom", "Your code: 4821")
        await until(pilot, lambda: sum(int(c) for c in column(table, "today")) == 1, within=15)

        await pilot.press("n", "ctrl+a", "ctrl+k", *"+79990001122", "enter")
        await until(pilot, lambda: cell(table, first_slot, "number") == "+79990001122", 15)

        await pilot.press("2")
        feed = app.screen.query_one("#messages", DataTable)
        await until(pilot, lambda: "Your code: 4821" in column(feed, "text"), within=10)
        # On the Messages screen, a new SMS arrives live: the agent says "message" without
        # data and the screen lists the messages again.
        site.hub.inject(1, "Google", "G-123456 is your code")
        await until(pilot, lambda: "G-123456 is your code" in column(feed, "text"), within=15)
        assert column(feed, "text")[-2:] == ["Your code: 4821", "G-123456 is your code"]
