"""The overview: the header and the slot table, and the actions on one slot."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Sparkline, Static

from agent.control.protocol import Rescan, ResetModem, SetNumber, Trace
from agent.status import ModemStatus, SlotActivity
from tui import format as fmt
from tui.safe import safe_text
from tui.screens.base import SiteScreen
from tui.screens.block_rules import BlockRulesScreen
from tui.screens.dialogs import ConfirmDialog, SetNumberDialog
from tui.view import SiteView
from tui.widgets.header import HeaderBar
from tui.widgets.line import TextBlock
from tui.widgets.slots import SlotTable


def slot_summary(modem: ModemStatus) -> Text:
    """One line about a slot for under the table: what the narrow table leaves out."""
    parts = [
        modem.slot,
        " ".join(p for p in (modem.manufacturer, modem.model) if p) or "modem ?",
        modem.operator_name or modem.operator or "operator ?",
        modem.registration or "not registered",
        f"{modem.signal_dbm} dBm" if modem.signal_dbm is not None else "signal ?",
    ]
    text = safe_text(" · ".join(parts))
    if modem.fault:
        text.append(" · ")
        text.append_text(safe_text(f"fault: {modem.fault}", "bold red"))
    return text


class OverviewScreen(SiteScreen):
    NAME = "overview"
    BINDINGS = [  # noqa: RUF012  (Textual's declaration style)
        Binding("enter", "detail", "Detail"),
        Binding("r", "rescan", "Rescan"),
        Binding("x", "reset", "Reset modem"),
        Binding("n", "set_number", "Number"),
        Binding("t", "trace", "AT trace"),
        Binding("b", "block_rules", "Block rules"),
    ]

    def compose_body(self) -> ComposeResult:
        yield SlotTable()
        yield TextBlock(id="slot-line")

    @property
    def table(self) -> SlotTable:
        return self.query_one(SlotTable)

    def show_body(self, view: SiteView) -> None:
        self.table.show(view)
        self._show_selected()

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._show_selected()

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_detail()

    def _show_selected(self) -> None:
        modem = self.selected_modem
        line = slot_summary(modem) if modem else Text("no modems seen yet", "bright_black")
        self.query_one("#slot-line", TextBlock).show_text(line)

    @property
    def selected_modem(self) -> ModemStatus | None:
        slot = self.table.selected_slot
        return next((m for m in self.site_app.view.snapshot.modems if m.slot == slot), None)

    def _need_modem(self) -> ModemStatus | None:
        modem = self.selected_modem
        if modem is None:
            self.app.notify("no slot selected", severity="warning", markup=False)
        return modem

    def action_detail(self) -> None:
        if (modem := self._need_modem()) is not None:
            self.app.push_screen(SlotDetailScreen(modem.slot))

    def action_rescan(self) -> None:
        self.site_app.act(Rescan(), "rescan started")

    def action_reset(self) -> None:
        if (modem := self._need_modem()) is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.site_app.act(ResetModem(modem.slot), f"reset of {modem.slot} started")

        question = f"Reset the modem in slot {modem.label or modem.slot}? It stops receiving SMS "
        question += "for up to a minute."
        self.app.push_screen(ConfirmDialog(question), confirmed)

    def action_set_number(self) -> None:
        if (modem := self._need_modem()) is None:
            return
        if not modem.iccid:
            self.app.notify(f"{modem.slot}: no SIM known", severity="warning", markup=False)
            return
        iccid = modem.iccid

        def entered(number: str | None) -> None:
            if number:
                self.site_app.act(SetNumber(iccid, number), f"number of {iccid} set to {number}")

        self.app.push_screen(SetNumberDialog(iccid, modem.number or ""), entered)

    def action_trace(self) -> None:
        if (modem := self._need_modem()) is None:
            return
        on = modem.slot not in self.site_app.traced_slots
        if on:
            self.site_app.traced_slots.add(modem.slot)
        else:
            self.site_app.traced_slots.discard(modem.slot)
        word = "on" if on else "off"
        self.site_app.act(Trace(modem.slot, on), f"AT trace {word} for {modem.slot}")

    def action_block_rules(self) -> None:
        self.app.push_screen(BlockRulesScreen())


class SlotDetailScreen(Screen[None]):
    """Everything about one slot, with its last 24 hours as sparklines."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]  # noqa: RUF012

    def __init__(self, slot: str) -> None:
        super().__init__()
        self.slot = slot

    def compose(self) -> ComposeResult:
        yield HeaderBar("overview")
        with VerticalScroll():
            yield Static(id="slot-fields")
            yield Static("SMS per hour, last 24 h", classes="chart-title")
            yield Sparkline([], id="sms-chart")
            yield Static("signal (dBm) per hour, last 24 h", classes="chart-title")
            yield Sparkline([], id="signal-chart")
        yield Footer()

    def on_screen_resume(self) -> None:
        from tui.app import SimedgeApp

        assert isinstance(self.app, SimedgeApp)
        self.show(self.app.view)

    def show(self, view: SiteView) -> None:
        self.query_one(HeaderBar).show(view)
        modem = next((m for m in view.snapshot.modems if m.slot == self.slot), None)
        activity = view.snapshot.activity.get(self.slot, SlotActivity())
        fields = Text()
        if modem is None:
            fields.append(f"slot {self.slot}: no longer seen", "red")
        else:
            rows = [
                ("slot", modem.slot),
                ("label", modem.label or "-"),
                ("modem", f"{modem.state} {('— ' + modem.fault) if modem.fault else ''}"),
                ("device", f"{modem.manufacturer or '?'} {modem.model or ''} IMEI {modem.imei}"),
                ("ports", ", ".join(modem.ports) + f" (AT: {modem.at_port})"),
                ("SIM", f"{modem.sim_state} ICCID {modem.iccid or '?'} IMSI {modem.imsi or '?'}"),
                ("number", f"{modem.number or '?'} ({modem.number_source})"),
                ("network", f"{modem.operator_name or ''} {modem.operator or '?'}"),
                ("registration", modem.registration or "-"),
                ("signal", f"{modem.signal_dbm} dBm, {modem.signal_bars} bars"),
                ("SIM storage", f"{modem.storage_used}/{modem.storage_total}"),
                (
                    "SMS today",
                    f"{activity.sms_today}, last {fmt.since(activity.last_sms_at, view.now)}",
                ),
            ]
            for name, value in rows:
                fields.append(f"{name:>13}  ", "bold")
                fields.append_text(safe_text(value))
                fields.append("\n")
        self.query_one("#slot-fields", Static).update(fields)
        self.query_one("#sms-chart", Sparkline).data = [float(v) for v in activity.sms_per_hour]
        # Sparkline draws from the bottom: dBm are negative, so shift by the floor of -113.
        self.query_one("#signal-chart", Sparkline).data = [
            float(v + 113) if v is not None else 0.0 for v in activity.signal_per_hour
        ]
