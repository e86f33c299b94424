"""Outbox: what waits to be uploaded, what backs off until when, what died and why."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from agent.control.protocol import Retry
from agent.errors import ControlError
from agent.status import MessageSummary, OutboxStatus
from tui import format as fmt
from tui.safe import safe_text
from tui.screens.base import SiteScreen
from tui.screens.dialogs import ConfirmDialog
from tui.view import SiteView


def outbox_state(message: MessageSummary, now: float) -> Text:
    if message.state == "dead":
        return Text("✖ dead", "red")
    if message.next_attempt_at and message.next_attempt_at > now:
        return Text(f"▲ retry in {fmt.age(message.next_attempt_at - now)}", "yellow")
    return Text(f"◌ {message.state}", "yellow")


class OutboxScreen(SiteScreen):
    NAME = "outbox"
    BINDINGS = [  # noqa: RUF012
        Binding("r", "retry", "Retry one"),
        Binding("A", "retry_all", "Retry all dead"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._counts: OutboxStatus | None = None
        self._rows: list[MessageSummary] = []

    def compose_body(self) -> ComposeResult:
        yield Static(id="outbox-counts")
        table: DataTable[Text] = DataTable(id="outbox", cursor_type="row")
        for key, width in (("id", 6), ("received", 5), ("sender", 13), ("state", 15)):
            table.add_column(key, width=width, key=key)
        table.add_column("tries", width=5, key="attempts")
        table.add_column("reason", key="reason")
        yield table

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#outbox", DataTable)

    def show_body(self, view: SiteView) -> None:
        outbox = view.snapshot.outbox
        counts = Text(f"{outbox.pending} pending  ")
        counts.append(f"▲ {outbox.backing_off} backing off  ", "yellow")
        counts.append(f"✖ {outbox.dead} dead  ", "red")
        counts.append(f"◐ {outbox.assembling} assembling  ⊘ {outbox.blocked} blocked")
        if outbox.last_error:
            counts.append("\nlast error: ")
            counts.append_text(safe_text(outbox.last_error, "red"))
        self.query_one("#outbox-counts", Static).update(counts)
        if outbox != self._counts:  # the list is asked for only when the counts moved
            self._counts = outbox
            self.load()

    @work(exclusive=True, group="outbox")
    async def load(self) -> None:
        try:
            rows = await self.site_app.link.outbox()
        except ControlError as exc:
            self.app.notify(str(exc), severity="error", markup=False)
            return
        now = self.site_app.view.now
        self._rows = rows
        self.table.clear()
        for m in rows:
            self.table.add_row(
                Text(str(m.id)),
                Text(fmt.age(now - m.received_at)),
                safe_text(m.sender),
                outbox_state(m, now),
                Text(str(m.attempts), justify="right"),
                safe_text(m.last_error or "", "red" if m.state == "dead" else ""),
                key=str(m.id),
            )

    def action_retry(self) -> None:
        if not self._rows or not 0 <= self.table.cursor_row < len(self._rows):
            self.app.notify("no message selected", severity="warning", markup=False)
            return
        message = self._rows[self.table.cursor_row]
        self.site_app.act(Retry(message_id=message.id), f"message {message.id} queued again")
        self._counts = None

    def action_retry_all(self) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self.site_app.act(Retry(all_dead=True), "dead letters queued again")
                self._counts = None

        dead = self.site_app.view.snapshot.outbox.dead
        self.app.push_screen(ConfirmDialog(f"Send all {dead} dead letters again?"), confirmed)
