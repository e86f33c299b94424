"""The block rules: list them, add one (checked by the agent, confirmed twice when it would
withhold most recent SMS), remove one added at run time after a yes."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from agent.control.protocol import RemoveBlockRule
from agent.errors import ControlError
from agent.status import BlockRuleStatus, RuleSource
from tui.safe import safe_text
from tui.screens.dialogs import BlockRuleDialog, BlockRuleProposal, ConfirmDialog

if TYPE_CHECKING:
    from tui.app import SimedgeApp

WHERE = {RuleSource.CONFIG: "config file", RuleSource.ADDED: "added"}


class BlockRulesScreen(ModalScreen[None]):
    """Every rule in force, where it lives, and whether it ran out of time on an SMS."""

    BINDINGS = [  # noqa: RUF012
        Binding("a", "add", "Add rule"),
        Binding("d,delete", "remove", "Remove rule"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self) -> None:
        super().__init__(classes="dialog")
        self.rules: list[BlockRuleStatus] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box rules-box"):
            yield Label("Block rules: matching SMS are kept on site, never uploaded")
            yield DataTable(id="block-rules", cursor_type="row", zebra_stripes=True)
            yield Static(id="rules-note")
            yield Static(Text("a add · d remove · escape close"))

    @property
    def site_app(self) -> SimedgeApp:
        return cast("SimedgeApp", self.app)

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#block-rules", DataTable)

    def on_mount(self) -> None:
        for key in ("name", "sender", "text", "where"):
            self.table.add_column(key, key=key)
        self.load()

    @work(exclusive=True, group="block-rules")
    async def load(self) -> None:
        try:
            self.rules = await self.site_app.link.block_rules()
        except ControlError as exc:
            self._note(str(exc), "bold red")
            return
        self.table.clear()
        for rule in self.rules:
            where = safe_text(WHERE[rule.source])
            if rule.timing_out:
                where = safe_text("too slow: skipped", "bold yellow")
            self.table.add_row(
                safe_text(rule.name),
                safe_text(rule.sender or "any"),
                safe_text(rule.text or "any"),
                where,
                key=rule.name,
            )
        self._note(
            f"{len(self.rules)} rules; rules from the config file are removed by editing it"
            if self.rules
            else "no block rules: every SMS is forwarded"
        )

    def _note(self, text: str, style: str = "") -> None:
        self.query_one("#rules-note", Static).update(safe_text(text, style, keep_newlines=True))

    @property
    def selected(self) -> BlockRuleStatus | None:
        if not self.rules or self.table.cursor_row >= len(self.rules):
            return None
        return self.rules[self.table.cursor_row]

    def action_add(self) -> None:
        def checked(proposal: BlockRuleProposal | None) -> None:
            self.site_app.propose_block_rule(proposal, then=self.load)

        self.app.push_screen(BlockRuleDialog(), checked)

    def action_remove(self) -> None:
        rule = self.selected
        if rule is None:
            return
        if rule.source is RuleSource.CONFIG:
            self.app.notify(
                f"block rule {rule.name!r} is in the configuration file: remove it from"
                " [[store.block]] there and restart the agent",
                severity="warning",
                markup=False,
            )
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._remove(rule.name)

        question = f"Remove block rule {rule.name!r}? SMS it matches will be forwarded again."
        self.app.push_screen(ConfirmDialog(question), answered)

    @work(group="block-rule-actions")
    async def _remove(self, name: str) -> None:
        try:
            done = await self.site_app.link.call(RemoveBlockRule(name))
        except ControlError as exc:
            self.app.notify(str(exc), title="remove refused", severity="error", markup=False)
            return
        self.app.notify(str(done), markup=False)
        self.load()

    def action_close(self) -> None:
        self.dismiss(None)
