"""The SIMs screen: every SIM ever seen, by ICCID, as `simedge sims` lists them; `b` asks
the selected SIM's balance. Driven with the pilot, and read from a real terminal (tmux)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from agent.control.protocol import AskBalance
from tests.tui import tmux
from tests.tui.pilot import cell, column, make_app, until
from tests.tui.site import SiteStandIn, demo_messages, demo_site, site_in_thread
from tui.screens.sims import SimsScreen


async def test_sims_screen_lists_every_sim_with_balance_and_deadline(
    site: SiteStandIn, socket_path: Path
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("7")
        await until(pilot, lambda: isinstance(app.screen, SimsScreen))
        table = app.screen.query_one("#sims", DataTable)
        await until(pilot, lambda: table.row_count == len(site.sims))
        assert column(table, "ICCID") == [row.iccid for row in site.sims]
        low = next(row for row in site.sims if row.balance_low)
        assert cell(table, low.iccid, "BALANCE") == "2.50 RUB LOW"
        unreadable = next(row for row in site.sims if row.balance_error)
        assert cell(table, unreadable.iccid, "BALANCE") == "unreadable"
        assert cell(table, site.sims[2].iccid, "UNTIL").endswith("!")  # past it
        assert not cell(table, site.sims[1].iccid, "UNTIL").endswith("!")
        assert cell(table, "8970102000000000099", "SLOT") == "(1-1.4)"
        assert cell(table, "8970102000000000099", "ALL") == "1250"
        summary = app.screen.query_one("#sims-summary", Static).render()
        assert "5 SIM(s) seen, 4 in a slot now" in str(summary)
        assert "1 with a low balance" in str(summary)
        # The selected SIM's every column below the table, the ones past 80 columns too.
        detail = str(app.screen.query_one("#sims-detail", Static).render())
        first = site.sims[0]
        assert f"number {first.number}" in detail
        assert f"source {first.number_source}" in detail
        assert f"iccid {first.iccid}" in detail
        table.move_cursor(row=len(site.sims) - 1)
        await until(
            pilot,
            lambda: (
                "iccid 8970102000000000099"
                in str(app.screen.query_one("#sims-detail", Static).render())
            ),
        )
        table.move_cursor(row=0)

        await pilot.press("b")  # the first row: a SIM in a slot
        await until(pilot, lambda: AskBalance(site.sims[0].iccid) in site.calls)
        table.move_cursor(row=len(site.sims) - 1)
        await pilot.press("b")  # the swapped-out SIM: no modem to ask
        await pilot.pause()
        assert [call for call in site.calls if isinstance(call, AskBalance)] == [
            AskBalance(site.sims[0].iccid)
        ]


@pytest.mark.skipif(not tmux.available(), reason="tmux is not installed")
def test_sims_screen_in_a_real_terminal(tmp_path: Path) -> None:
    socket_path = tmp_path / "control.sock"
    with site_in_thread(socket_path, SiteStandIn(demo_site(), demo_messages())):
        session = tmux.Tmux(tmux.tui_command(socket_path, tmp_path / "simedge.db"))
        try:
            session.wait_for("● live")
            session.send("7")
            screen = session.wait_for("in a slot now")
            lines = screen.splitlines()
            assert len(lines) <= 24
            assert all(len(line) <= 80 for line in lines)
            assert "7 SIMs" in screen
            assert "LOW" in screen
            assert "b Ask balance" in lines[-1]
            # Past 80 columns, the selected SIM's source, operator and ICCID are still read.
            assert "source " in screen
            assert "iccid " in screen
            session.send("q")
        finally:
            session.close()


async def test_sims_screen_reads_the_database_when_the_agent_is_down(
    socket_path: Path, tmp_path: Path
) -> None:
    from tests.tui.test_offline import make_database

    db_path = await make_database(tmp_path / "simedge.db")
    app = make_app(socket_path, db_path)  # nothing listens on the socket
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: app.view.snapshot.modems)
        assert not app.view.live
        await pilot.press("7")
        await until(pilot, lambda: isinstance(app.screen, SimsScreen))
        table = app.screen.query_one("#sims", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        assert cell(table, "8970100000000000000", "SLOT") == "(1-1.1)"  # last seen there
        assert cell(table, "8970100000000000000", "NUMBER") == "+79161234500"
        assert cell(table, "8970100000000000000", "ALL") == "2"
        summary = app.screen.query_one("#sims-summary", Static).render()
        assert "1 SIM(s) seen, 0 in a slot now" in str(summary)
