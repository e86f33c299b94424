"""Messages: the live feed (newest at the bottom), a filter, and one message in detail."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from agent.errors import ControlError
from agent.status import MessageDetail, MessageSummary
from tui import format as fmt
from tui.safe import safe_text
from tui.screens.base import SiteScreen
from tui.screens.dialogs import BlockRuleDialog
from tui.view import SiteView
from tui.widgets.header import HeaderBar

MAX_ROWS = 500
STATES = {
    "sent": ("✔", "green"),
    "pending": ("◌", "yellow"),
    "assembling": ("◐", "yellow"),
    "dead": ("✖", "red"),
    "blocked": ("⊘", "bright_black"),
}


def message_state(message: MessageSummary) -> Text:
    return fmt.state(STATES.get(message.state), message.state)


def clock_time(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


class MessagesScreen(SiteScreen):
    NAME = "messages"
    BINDINGS = [  # noqa: RUF012
        Binding("slash", "filter", "Filter"),
        Binding("enter", "detail", "Detail", show=False),
        Binding("b", "block_sender", "Block sender"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_text = ""
        self._shown: dict[int, MessageSummary] = {}

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="filter by number or sender; enter to apply", id="filter")
        table: DataTable[Text] = DataTable(id="messages", cursor_type="row")
        table.add_column("time", width=8, key="time")
        table.add_column("slot", width=7, key="slot")
        table.add_column("sender", width=13, key="sender")
        table.add_column("state", width=12, key="state")
        table.add_column("text", key="text")
        yield table

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#messages", DataTable)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.load()
        self.table.focus()

    @work(exclusive=True, group="messages")
    async def load(self) -> None:
        try:
            messages = await self.site_app.link.messages(self.query_text)
        except ControlError as exc:
            self.app.notify(str(exc), severity="error", markup=False)
            return
        self.table.clear()
        self._shown.clear()
        self._add(reversed(messages))

    def show_body(self, view: SiteView) -> None:
        pass  # the agent says when messages changed; the app then calls load()

    def _add(self, messages: Iterable[MessageSummary]) -> None:
        table = self.table
        follow = table.cursor_row >= table.row_count - 1
        for message in messages:
            key = str(message.id)
            if message.id in self._shown:
                table.update_cell(key, "state", message_state(message))
            else:
                table.add_row(
                    Text(clock_time(message.received_at)),
                    safe_text(message.slot or "-"),
                    safe_text(message.sender),
                    message_state(message),
                    safe_text(message.text),
                    key=key,
                )
            self._shown[message.id] = message
        while table.row_count > MAX_ROWS:
            oldest = next(iter(self._shown))
            del self._shown[oldest]
            table.remove_row(str(oldest))
        if follow and table.row_count:
            table.move_cursor(row=table.row_count - 1)

    @property
    def selected(self) -> MessageSummary | None:
        if not self.table.row_count:
            return None
        key = self.table.coordinate_to_cell_key((self.table.cursor_row, 0)).row_key.value
        return self._shown.get(int(key)) if key else None

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.query_text = ""
        self.load()
        self.table.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value.strip()
        self.load()
        self.table.focus()

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        if (message := self.selected) is not None:
            self.app.push_screen(MessageDetailScreen(message.id))

    def action_block_sender(self) -> None:
        # The sender as a pattern that matches it alone: "+7916..." is not a valid regex.
        sender = f"^{re.escape(self.selected.sender)}$" if self.selected else ""
        self.app.push_screen(BlockRuleDialog(sender), self.site_app.propose_block_rule)


def detail_text(detail: MessageDetail) -> Text:
    """The whole message: its fields, its text, its raw PDU parts and every attempt."""
    m = detail.message
    text = Text()

    def line(name: str, value: object, style: str = "") -> None:
        text.append(f"{name:>10}  ", "bold")
        text.append_text(safe_text(value, style, keep_newlines=True))
        text.append("\n")

    line("id", m.id)
    line("state", f"{m.state}" + (f" (rule {m.blocked_rule})" if m.blocked_rule else ""))
    line("from", m.sender)
    line("to", f"{m.number or '?'} (SIM {m.iccid or '?'}, slot {m.slot or '?'})")
    line("received", clock_time(m.received_at) + f"  SMSC time {m.scts or '?'}")
    if not m.complete:
        line("missing", f"parts {m.missing_parts}", "yellow")
    if m.problems:
        # Forwarded although the PDU had faulty fields: say which, so a person can judge.
        line("salvaged", m.problems, "yellow")
    if m.last_error:
        line("last error", m.last_error, "red")
    text.append("\n")
    text.append_text(safe_text(m.text, keep_newlines=True))
    text.append("\n\n")
    text.append(f"PDU parts ({len(detail.pdus)})\n", "bold underline")
    for pdu in detail.pdus:
        where = f"{pdu.storage}:{pdu.index}" if pdu.index is not None else pdu.storage
        line(clock_time(pdu.read_at), f"{where} {pdu.status} {pdu.error or ''}")
        text.append_text(safe_text(pdu.pdu_hex, "bright_black"))
        text.append("\n")
    text.append(f"\nDelivery attempts ({len(detail.attempts)})\n", "bold underline")
    for attempt in detail.attempts:
        status = f" HTTP {attempt.http_status}" if attempt.http_status else ""
        line(clock_time(attempt.at), f"{attempt.outcome}{status} {attempt.body or ''}")
    return text


class MessageDetailScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]  # noqa: RUF012

    def __init__(self, message_id: int) -> None:
        super().__init__()
        self.message_id = message_id

    def compose(self) -> ComposeResult:
        yield HeaderBar("messages")
        with VerticalScroll():
            yield Static(Text(f"loading message {self.message_id}…"), id="message-detail")
        yield Footer()

    def on_mount(self) -> None:
        from tui.app import SimedgeApp

        assert isinstance(self.app, SimedgeApp)
        self.query_one(HeaderBar).show(self.app.view)
        self.load()

    @work(exclusive=True)
    async def load(self) -> None:
        from tui.app import SimedgeApp

        assert isinstance(self.app, SimedgeApp)
        body = self.query_one("#message-detail", Static)
        try:
            detail = await self.app.link.message(self.message_id)
        except ControlError as exc:
            body.update(safe_text(str(exc), "red"))
            return
        body.update(detail_text(detail))
