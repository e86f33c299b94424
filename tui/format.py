"""How the dashboard says things: status by symbol, word and colour; ages; bars; sums.

Colour is never the only carrier of meaning (many SSH clients get no colour, some people
see none): each state has its own symbol and word, and the colour only repeats them.
Everything returned is a plain :class:`rich.text.Text`; untrusted strings go through
:func:`tui.safe.safe_text`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.text import Text

from agent.status import ModemState, SimState, UplinkCondition
from tui.safe import safe_text

MODEM_STATES: dict[str, tuple[str, str]] = {
    ModemState.READY: ("●", "green"),
    ModemState.STARTING: ("◐", "yellow"),
    ModemState.PROBING: ("◌", "yellow"),
    ModemState.RECOVERING: ("▲", "yellow"),
    ModemState.FAILED: ("✖", "red"),
    ModemState.GONE: ("○", "bright_black"),
}
SIM_STATES: dict[str, tuple[str, str]] = {
    SimState.READY: ("●", "green"),
    SimState.BUSY: ("◌", "yellow"),
    SimState.LOCKED: ("▲", "red"),
    SimState.ABSENT: ("✖", "red"),
    SimState.ERROR: ("✖", "red"),
    SimState.UNKNOWN: ("?", "bright_black"),
}
UPLINK_STATES: dict[str, tuple[str, str, str]] = {
    UplinkCondition.OK: ("●", "ok", "green"),
    UplinkCondition.BACKING_OFF: ("▲", "backing off", "yellow"),
    UplinkCondition.PAUSED: ("✖", "PAUSED", "bold red"),
    UplinkCondition.STORE_NOT_WRITABLE: ("✖", "PAUSED: store not writable", "bold red"),
}
LEVELS: dict[str, tuple[str, str]] = {
    "info": ("·", ""),
    "warning": ("▲", "yellow"),
    "alarm": ("✖", "bold red"),
}
BARS = "▂▄▆█"
SPARK = " ▁▂▃▄▅▆▇█"


def state(symbol_style: tuple[str, str] | None, word: str) -> Text:
    """ "● ready": a symbol and a word, in the state's colour."""
    symbol, style = symbol_style or ("?", "")
    return Text(f"{symbol} {word}", style=style, no_wrap=True)


def modem_state(value: str) -> Text:
    return state(MODEM_STATES.get(value), str(value))


def sim_state(value: str) -> Text:
    return state(SIM_STATES.get(value), str(value))


def signal(bars: int | None, dbm: int | None = None) -> Text:
    """Four bars, lit ones drawn, unlit ones as dots: readable without colour."""
    if bars is None:
        return Text("····", style="bright_black")
    lit = max(0, min(len(BARS), bars))
    style = "red" if lit <= 1 else "yellow" if lit == 2 else "green"
    text = Text(BARS[:lit], style=style)
    text.append("·" * (len(BARS) - lit), style="bright_black")
    return text


def age(seconds: float | None) -> str:
    """ "<1m", "5m", "3h", "2d": short enough for a table cell; "-" for never.

    Nothing finer than a minute: an age in seconds would change the screen every second,
    and every change is bytes over a slow SSH link."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return "<1m"


def since(at: float | None, now: float) -> str:
    return "never" if at is None else age(now - at) + " ago"


def size(count: int | None) -> str:
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def rub(amount: float) -> str:
    return f"{amount:,.2f} ₽".replace(",", " ")


def sparkline(values: Iterable[float | None]) -> str:
    """A one-line chart, one character per value: " " for none, "▁" to "█" by size."""
    values = list(values)
    known = [v for v in values if v is not None]
    top = max(known, default=0) or 1
    low = min(known, default=0)
    span = (top - low) or 1
    chars = []
    for value in values:
        if value is None:
            chars.append(" ")
        elif top == low:
            chars.append(SPARK[4] if value else SPARK[1])
        else:
            chars.append(SPARK[1 + round((value - low) / span * (len(SPARK) - 2))])
    return "".join(chars)


def level(value: str) -> Text:
    symbol, style = LEVELS.get(value, ("·", ""))
    return Text(f"{symbol} {value}", style=style, no_wrap=True)


def untrusted(value: object, style: str = "") -> Text:
    return safe_text(value, style)


def slot_order(slot: str) -> tuple[object, ...]:
    """Physical order: "1-1.2" before "1-1.10" (numbers compared as numbers)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", slot))
