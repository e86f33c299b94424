"""Charts: the last 24 hours, for the site and per slot, where looking beats reading."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Sparkline, Static

from agent.status import SlotActivity
from tui import format as fmt
from tui.safe import safe_text
from tui.screens.base import SiteScreen
from tui.view import SiteView


class ChartsScreen(SiteScreen):
    NAME = "charts"

    def compose_body(self) -> ComposeResult:
        yield Static(id="forwarded-title", classes="chart-title")
        yield Sparkline([], id="forwarded-chart")
        yield Static(id="latency-title", classes="chart-title")
        yield Sparkline([], id="latency-chart")
        table: DataTable[Text] = DataTable(id="slot-charts", cursor_type="row")
        table.add_column("slot", width=8, key="slot")
        table.add_column("SMS/hour, 24 h", width=24, key="sms")
        table.add_column("24 h", width=5, key="total")
        table.add_column("signal, 24 h", width=24, key="signal")
        yield table

    def show_body(self, view: SiteView) -> None:
        snapshot = view.snapshot
        forwarded = snapshot.forwarded_per_hour
        latency = [v for v in snapshot.latency_per_hour if v is not None]
        self.query_one("#forwarded-title", Static).update(
            f"SMS forwarded per hour, last 24 h: {sum(forwarded)} in all, "
            f"peak {max(forwarded, default=0)}/h"
        )
        self.query_one("#forwarded-chart", Sparkline).data = [float(v) for v in forwarded]
        median = f"{latency[-1]:.1f} s in the last hour" if latency else "no uploads"
        self.query_one("#latency-title", Static).update(f"delivery latency (median): {median}")
        self.query_one("#latency-chart", Sparkline).data = [
            float(v or 0.0) for v in snapshot.latency_per_hour
        ]
        table = self.query_one("#slot-charts", DataTable)
        table.clear()
        for modem in sorted(snapshot.modems, key=lambda m: fmt.slot_order(m.slot)):
            activity = snapshot.activity.get(modem.slot, SlotActivity())
            table.add_row(
                safe_text(modem.label or modem.slot),
                Text(fmt.sparkline(activity.sms_per_hour), "cyan"),
                Text(str(sum(activity.sms_per_hour)), justify="right"),
                Text(fmt.sparkline(activity.signal_per_hour), "green"),
                key=modem.slot,
            )
