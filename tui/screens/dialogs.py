"""The dialogs: confirm a destructive action, set a SIM's number, add a block rule."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from agent.control.protocol import AddBlockRule, PreviewBlockRule
from agent.errors import ControlError
from agent.status import BlockRuleTrial
from tui.safe import safe_text

NUMBER = re.compile(r"\+?[0-9]{6,15}")


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no; "no" is the default and escape means no."""

    BINDINGS = [  # noqa: RUF012
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="dialog")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(safe_text(self.question, keep_newlines=True))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class SetNumberDialog(ModalScreen[str | None]):
    """A person's word for a SIM's own number (most SIMs do not store it)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012

    def __init__(self, iccid: str, current: str) -> None:
        super().__init__(classes="dialog")
        self.iccid = iccid
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(safe_text(f"Own number of SIM {self.iccid}"))
            yield Input(self.current, placeholder="+79161234567", id="number")
            yield Static(Text("international format; enter to save, escape to cancel"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        number = event.value.strip().replace(" ", "")
        if not NUMBER.fullmatch(number):
            self.app.notify(
                f"not a phone number: {number!r} (6 to 15 digits, optional +)",
                severity="error",
                markup=False,
            )
            return
        self.dismiss(number)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class BlockRuleProposal:
    """A rule the person filled in and the agent accepted as valid, with what it would
    have withheld of the last stored SMS (the agent's answer to the preview)."""

    rule: PreviewBlockRule
    trial: BlockRuleTrial

    def adding(self, *, force: bool) -> AddBlockRule:
        rule = self.rule
        return AddBlockRule(rule.name, rule.sender, rule.text, force=force)


class BlockRuleDialog(ModalScreen[BlockRuleProposal | None]):
    """A rule that keeps matching SMS on site and never uploads them.

    On enter the agent checks the patterns and tries the rule on the last stored SMS; a
    refusal (bad pattern, empty, too long...) is shown here and the dialog stays open,
    so the person corrects it without typing it all again."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012
    FIELDS = ("name", "sender", "text")

    def __init__(self, sender_pattern: str = "") -> None:
        super().__init__(classes="dialog")
        self.sender_pattern = sender_pattern

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label("Block rule: matching SMS are kept, never uploaded")
            yield Input(placeholder="rule name", id="name")
            yield Input(self.sender_pattern, placeholder="sender pattern: ^Tele2$", id="sender")
            yield Input(placeholder="text pattern: (?i)access code", id="text")
            yield Static(
                Text("regular expressions, found anywhere; enter in the last field to check")
            )
            yield Static(id="problem")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "text":
            self.focus_next()
            return
        rule = {key: self.query_one(f"#{key}", Input).value.strip() for key in self.FIELDS}
        if not rule["name"] or not (rule["sender"] or rule["text"]):
            self._problem("a rule needs a name and a sender or a text pattern")
            return
        self._check(PreviewBlockRule(rule["name"], rule["sender"] or None, rule["text"] or None))

    @work(exclusive=True, group="block-rule-check")
    async def _check(self, rule: PreviewBlockRule) -> None:
        from tui.app import SimedgeApp

        app = self.app
        assert isinstance(app, SimedgeApp)
        self._problem("checking with the agent…")
        try:
            trial = await app.link.call(rule)
        except ControlError as exc:
            self._problem(str(exc))
            return
        self.dismiss(BlockRuleProposal(rule, trial))

    def _problem(self, text: str) -> None:
        self.query_one("#problem", Static).update(safe_text(text, "bold red", keep_newlines=True))

    def action_cancel(self) -> None:
        self.dismiss(None)
