"""Take-off: the SIMs that earned enough, where they are, and their sums; mark one done."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from agent.control.protocol import TakeoffDone
from agent.status import TakeoffMark
from tui import format as fmt
from tui.safe import safe_text
from tui.screens.base import SiteScreen
from tui.screens.dialogs import ConfirmDialog
from tui.view import SiteView


class TakeoffScreen(SiteScreen):
    NAME = "takeoff"
    BINDINGS = [Binding("d", "done", "Mark swapped")]  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self._marks: tuple[TakeoffMark, ...] | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(id="takeoff-total")
        table: DataTable[Text] = DataTable(id="takeoff", cursor_type="row")
        table.add_column("slot", width=8, key="slot")
        table.add_column("number", width=13, key="number")
        table.add_column("sum", width=12, key="sum")
        table.add_column("marked", width=7, key="marked")
        table.add_column("ICCID", key="iccid")
        yield table

    def show_body(self, view: SiteView) -> None:
        marks = view.snapshot.takeoff
        total = sum(mark.sum_rub for mark in marks)
        summary = Text(f"⚑ {len(marks)} SIM(s) to swap, {fmt.rub(total)} in all", "bold magenta")
        self.query_one("#takeoff-total", Static).update(
            summary if marks else Text("nothing to swap")
        )
        if marks == self._marks:
            return
        self._marks = marks
        table = self.query_one("#takeoff", DataTable)
        table.clear()
        labels = {m.slot: m.label or m.slot for m in view.snapshot.modems}
        for mark in sorted(marks, key=lambda m: fmt.slot_order(m.slot or "~")):
            table.add_row(
                safe_text(labels.get(mark.slot, mark.slot or "?")),
                safe_text(mark.number or "?"),
                Text(fmt.rub(mark.sum_rub), justify="right"),
                Text(fmt.age(view.now - mark.marked_at)),
                safe_text(mark.iccid),
                key=mark.iccid,
            )

    def action_done(self) -> None:
        table = self.query_one("#takeoff", DataTable)
        if not table.row_count:
            self.app.notify("nothing to swap", severity="warning", markup=False)
            return
        iccid = str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.site_app.act(TakeoffDone(iccid), f"SIM {iccid} marked swapped")

        self.app.push_screen(
            ConfirmDialog(f"SIM {iccid} was taken out and replaced? Its mark is cleared."),
            confirmed,
        )
