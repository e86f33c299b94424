"""SIMs: every SIM ever seen on the site, by ICCID, as ``simedge sims`` lists them: where
it is, its number and where that came from, its balance (LOW below the configured
threshold), until when it stays active, its SMS and what it earned, the calls that rang
on it (and the last caller), and its last number probe by SMS (why it failed). ``b`` asks the
selected SIM's balance now. The columns that do not fit 80 columns are printed for the
selected SIM below the table."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from agent.control.protocol import AskBalance
from agent.errors import ControlError
from agent.status import SIM_COLUMNS, SIM_LEGEND, SimRow
from tui.safe import safe_text
from tui.screens.base import SiteScreen
from tui.view import SiteView

# Columns whose cells come from a modem or an operator (numbers, answers): shown as text.
_UNTRUSTED = {"ICCID", "NUMBER", "NET", "CALLER", "PROBE"}


class SimsScreen(SiteScreen):
    NAME = "sims"
    BINDINGS = [Binding("b", "balance", "Ask balance")]  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self._modems: tuple[tuple[object, ...], ...] | None = None
        self._rows: list[SimRow] = []

    def compose_body(self) -> ComposeResult:
        yield Static(id="sims-summary")
        table: DataTable[Text] = DataTable(id="sims", cursor_type="row")
        for heading, width in SIM_COLUMNS:
            table.add_column(heading.lower(), width=width, key=heading)
        yield table
        yield Static(id="sims-detail")
        yield Static(Text(SIM_LEGEND), id="sims-legend")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#sims", DataTable)

    def show_body(self, view: SiteView) -> None:
        # The list is asked for when what it shows of the modems changed (a SIM came or
        # went, a number or a balance was read), not at every signal figure: on a big
        # site it is a query of a second (docs/upkeep.md).
        shown = tuple(
            (m.slot, m.iccid, m.number, m.balance, m.balance_at, m.active_until)
            for m in view.snapshot.modems
        )
        if shown != self._modems:
            self._modems = shown
            self.load()

    @work(exclusive=True, group="sims")
    async def load(self) -> None:
        try:
            rows = await self.site_app.link.sims()
        except ControlError as exc:
            self.query_one("#sims-summary", Static).update(safe_text(str(exc), "red"))
            return
        now = self.site_app.view.now
        self._rows = rows
        low = sum(1 for row in rows if row.balance_low)
        present = sum(1 for row in rows if row.in_slot)
        summary = Text(f"{len(rows)} SIM(s) seen, {present} in a slot now")
        if low:
            summary.append(f"  ⚠ {low} with a low balance", "bold yellow")
        self.query_one("#sims-summary", Static).update(summary)
        self.table.clear()
        for row in rows:
            cells = row.cells(now)
            self.table.add_row(
                *(
                    safe_text(cell) if heading in _UNTRUSTED else _styled(heading, cell)
                    for (heading, _), cell in zip(SIM_COLUMNS, cells, strict=True)
                ),
                key=row.iccid,
            )
        self._show_detail(self.table.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.cursor_row)

    def _show_detail(self, index: int) -> None:
        detail = self.query_one("#sims-detail", Static)
        if not 0 <= index < len(self._rows):
            detail.update("")
            return
        detail.update(
            safe_text(self._rows[index].details(self.site_app.view.now), keep_newlines=True)
        )

    def action_balance(self) -> None:
        if not self._rows or not 0 <= self.table.cursor_row < len(self._rows):
            self.app.notify("no SIM selected", severity="warning", markup=False)
            return
        row = self._rows[self.table.cursor_row]
        if not row.in_slot:
            self.app.notify(f"SIM {row.iccid} is in no slot now", severity="warning", markup=False)
            return
        self.site_app.act(AskBalance(row.iccid), f"balance of SIM {row.iccid} asked")


def _styled(heading: str, cell: str) -> Text:
    if heading == "BALANCE" and cell.endswith("LOW"):
        return Text(cell, "bold yellow")
    if heading == "UNTIL" and cell.endswith("!"):
        return Text(cell, "bold red")
    return Text(cell)
