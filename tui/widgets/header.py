"""The header bar: is the site earning, in three lines, and where am I (the tab line)."""

from __future__ import annotations

from rich.text import Text

from agent.status import PublicUrlState, PublicUrlStatus, UplinkCondition
from tui import format as fmt
from tui.safe import safe_text
from tui.view import SiteView
from tui.widgets.line import TextBlock

TABS = (
    ("1", "overview", "Overview"),
    ("2", "messages", "Messages"),
    ("3", "outbox", "Outbox"),
    ("4", "takeoff", "Take-off"),
    ("5", "charts", "Charts"),
    ("6", "log", "Log"),
    ("7", "sims", "SIMs"),
)


class HeaderBar(TextBlock):
    """Repainted only when its text changes (ages move in steps of seconds at most)."""

    def __init__(self, current: str) -> None:
        super().__init__(id="header-bar")
        self.current = current

    def show(self, view: SiteView) -> None:
        self.show_text(self.render_view(view))

    def render_view(self, view: SiteView) -> Text:
        snapshot, now = view.snapshot, view.now
        lines = []
        if view.live:
            # No clock on this line (it would change the header at every redraw); the public
            # URL's age below moves in steps of a minute at most.
            first = Text("● live", style="bold green")
        else:
            first = Text("✖ AGENT DOWN ", style="bold white on red")
            first.append(" ")
            first.append_text(safe_text(view.problem or "", "red"))
            if snapshot.taken_at:
                first.append("  (database as of " + fmt.since(snapshot.taken_at, now) + ")")
        if snapshot.public_url is not None:
            first.append("  ")
            first.append_text(public_url_text(snapshot.public_url, now))
        lines.append(first)

        uplink, outbox = snapshot.uplink, snapshot.outbox
        symbol, word, style = fmt.UPLINK_STATES.get(uplink.state, ("?", uplink.state, ""))
        second = Text("uplink ")
        second.append(f"{symbol} {word}", style=style)
        if uplink.code and uplink.state != UplinkCondition.OK:
            second.append_text(safe_text(f" ({uplink.code})", style))
        last_upload = uplink.last_success_at or outbox.last_success_at
        second.append(f"  last upload {fmt.since(last_upload, now)}")
        second.append(f"  outbox {outbox.pending} pending")
        if outbox.backing_off:
            second.append(f" ▲{outbox.backing_off} back-off", style="yellow")
        if outbox.dead:
            second.append(f" ✖{outbox.dead} dead", style="red")
        lines.append(second)

        # Online is what OnlineSim accepted, not what looks ready here (agent.status).
        accepted = snapshot.numbers_online
        if accepted is None:
            third = Text("SIMs online ")
            third.append("not yet sent", style="yellow")
        else:
            third = Text(f"SIMs online {accepted.count}/{len(snapshot.modems)}")
        clock = {True: ("✔ synced", "green"), False: ("▲ not synced", "yellow")}.get(
            snapshot.clock_synced, ("? unknown", "bright_black")
        )
        third.append("  clock ")
        third.append(*clock)
        third.append(f"  disk {fmt.size(snapshot.disk_free_bytes)} free")
        if snapshot.takeoff:
            total = sum(mark.sum_rub for mark in snapshot.takeoff)
            third.append(f"  ⚑ take-off {len(snapshot.takeoff)} ({fmt.rub(total)})", "magenta")
        lines.append(third)

        tabs = Text()
        for key, name, title in TABS:
            style = "reverse bold" if name == self.current else ""
            tabs.append(f" {key} {title} ", style=style)
        lines.append(tabs)
        return Text("\n", no_wrap=True).join(lines)


PUBLIC_URL_STATES: dict[str, tuple[str, str, str]] = {
    PublicUrlState.UP: ("●", "reachable", "green"),
    PublicUrlState.DOWN: ("✖", "UNREACHABLE", "bold red"),
    PublicUrlState.UNKNOWN: ("?", "not checked yet", "bright_black"),
}


def public_url_text(status: PublicUrlStatus, now: float) -> Text:
    """ "public URL ● reachable for 2h": whether OnlineSim can call the webhook (through
    the relay's tunnel or the router's port forward), and since when."""
    symbol, word, style = PUBLIC_URL_STATES.get(status.state, ("?", status.state, ""))
    text = Text("public URL ")
    text.append(f"{symbol} {word}", style=style)
    if status.since is not None:
        text.append(f" for {fmt.age(now - status.since)}")
    return text
