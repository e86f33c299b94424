"""Helpers for Pilot tests: build the app on the stand-in, wait for what a test needs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.tui.site import NOW
from tui.app import SimedgeApp, create_app


def make_app(socket_path: Path, db_path: Path | None = None) -> SimedgeApp:
    return create_app(
        socket_path, db_path, clock=lambda: NOW, min_interval=0.05, retry_delays=(0.05,)
    )


async def until(pilot: Pilot[None], condition: Callable[[], object], within: float = 5.0) -> None:
    """Let the app run until ``condition()`` holds; fail with the condition's source if
    it never does. (Textual has no event for "the screen now shows X".)"""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held: {condition}")
        await pilot.pause(0.02)


def cell(table: DataTable[Text], row: str, column: str) -> str:
    value = table.get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


def column(table: DataTable[Text], key: str) -> list[str]:
    return [cell(table, str(row.value), key) for row in table.rows]
