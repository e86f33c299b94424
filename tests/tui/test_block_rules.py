"""The dashboard's block rules against the real agent: list, a rule that ran out of time
(marked in the list, said once in the log), a refused pattern shown in the dialog, the
second confirmation for a rule that would withhold most SMS, removal."""

from __future__ import annotations

from textual.widgets import DataTable, Input, RichLog, Static

from tests.e2e.site import StartSite
from tests.tui.pilot import column, until
from tui.app import create_app
from tui.screens.block_rules import BlockRulesScreen
from tui.screens.dialogs import BlockRuleDialog, ConfirmDialog

BANK = {"name": "bank", "sender": "(?i)^sberbank$"}
STUCK = {"name": "stuck", "text": "^(a|aa)+$"}  # backtracks for minutes on HOSTILE
HOSTILE = "a" * 40 + "b"


async def test_block_rules_on_the_dashboard(start_site: StartSite) -> None:
    site = await start_site(count=2, profile="sim800", store={"block": [BANK, STUCK]})
    await site.ready_modems(2)
    store = site.agent.store
    assert store is not None
    site.hub.inject(0, "VKcom", "VK code 1")
    site.hub.inject(1, "VKcom", "VK code 2")
    site.hub.inject(1, "+79161234567", HOSTILE)  # forwarded: the stuck rule counts as no match
    await site.until(lambda: len(site.standin.state.messages) == 3)

    app = create_app(
        site.config.control_socket, site.config.database, min_interval=0.05, retry_delays=(0.1,)
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.view.live, within=10)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BlockRulesScreen))
        rules = app.screen
        table = rules.query_one("#block-rules", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        assert column(table, "where") == ["config file", "too slow: skipped"]

        await pilot.press("d")  # a configured rule: nothing to confirm, it stays
        await pilot.pause()
        assert app.screen is rules
        assert [rule.name for rule in store.block_rules] == ["bank", "stuck"]

        # A bad pattern: the agent's refusal is shown in the dialog, which stays open.
        await pilot.press("a", *"vk", "enter", "enter", *"(unclosed", "enter")
        dialog = app.screen
        assert isinstance(dialog, BlockRuleDialog)
        problem = dialog.query_one("#problem", Static)
        await until(pilot, lambda: "text: is not a regular expression" in str(problem.render()))
        assert "block rule 'vk'" in str(problem.render())

        # Corrected, it would withhold two of the three stored SMS: asked again; "n" adds
        # nothing.
        await pilot.press("ctrl+a", "ctrl+k", *"VK code", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        question = str(app.screen.query_one(Static).render())
        assert "would have withheld 2 of the last 3 SMS" in question
        await pilot.press("n")
        await until(pilot, lambda: app.screen is rules)
        assert [rule.name for rule in store.block_rules] == ["bank", "stuck"]

        await pilot.press("a", *"vk", "enter", "enter", *"VK code", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: table.row_count == 3)
        assert [rule.name for rule in store.block_rules] == ["bank", "stuck", "vk"]

        # Removed after a yes.
        await pilot.press("down", "down", "d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: table.row_count == 2)
        assert [rule.name for rule in store.block_rules] == ["bank", "stuck"]

        # The timeout is in the site's log, once.
        await pilot.press("escape", "6")
        log = app.screen.query_one(RichLog)
        await until(pilot, lambda: any("'stuck' took longer" in line.text for line in log.lines))
        assert sum("'stuck' took longer" in line.text for line in log.lines) == 1

        # From the message list, "b" offers the sender as a pattern that matches it alone.
        await pilot.press("2")
        feed = app.screen.query_one("#messages", DataTable)
        await until(pilot, lambda: feed.row_count == 3, within=10)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BlockRuleDialog))
        # The newest is either sender (two modems); "+" would not be a valid pattern.
        assert app.screen.query_one("#sender", Input).value in ("^VKcom$", r"^\+79161234567$")
