"""The dialogs: confirm a destructive action, set a SIM's number, add a block rule."""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

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


class BlockRuleDialog(ModalScreen[dict[str, str] | None]):
    """A rule that keeps matching SMS on site and never uploads them."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012
    FIELDS = ("name", "sender", "text")

    def __init__(self, sender: str = "") -> None:
        super().__init__(classes="dialog")
        self.sender = sender

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label("Block rule: matching SMS are kept, never uploaded")
            yield Input(placeholder="rule name", id="name")
            yield Input(self.sender, placeholder="sender (exact)", id="sender")
            yield Input(placeholder="text contains", id="text")
            yield Static("enter in the last field to add, escape to cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "text":
            self.focus_next()
            return
        rule = {
            key: self.query_one(f"#{key}", Input).value.strip()
            for key in ("name", "sender", "text")
        }
        if not rule["name"] or not (rule["sender"] or rule["text"]):
            self.app.notify(
                "a rule needs a name and a sender or a text", severity="error", markup=False
            )
            return
        self.dismiss({key: value for key, value in rule.items() if value})

    def action_cancel(self) -> None:
        self.dismiss(None)
