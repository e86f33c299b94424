"""Log: the agent's recent events (modem resets, faults, syncs, alarms), newest last."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import RichLog

from agent.status import LogEvent
from tui import format as fmt
from tui.safe import safe_text
from tui.screens.base import SiteScreen
from tui.view import SiteView


def event_line(event: LogEvent) -> Text:
    line = Text(time.strftime("%m-%d %H:%M:%S ", time.localtime(event.at)))
    line.append_text(fmt.level(event.level))
    line.append(f" {event.kind:<8} ")
    if event.slot:
        line.append_text(safe_text(f"[{event.slot}] ", "cyan"))
    line.append_text(safe_text(event.text))
    return line


class LogScreen(SiteScreen):
    NAME = "log"

    def __init__(self) -> None:
        super().__init__()
        self._written: tuple[LogEvent, ...] = ()

    def compose_body(self) -> ComposeResult:
        yield RichLog(id="log", max_lines=1000, wrap=False, markup=False)

    def show_body(self, view: SiteView) -> None:
        events = view.snapshot.events
        log = self.query_one(RichLog)
        # Only what is new is written; a snapshot that does not extend what is shown
        # (the agent restarted, the log was trimmed) redraws it all.
        last = self._written[-1] if self._written else None
        if last is not None and last in events:
            new = events[events.index(last) + 1 :]
        else:
            log.clear()
            new = events
        for event in new:
            log.write(event_line(event))
        self._written = events
