"""The slot table: one row per modem in physical order, redrawn cell by cell.

A slow SSH link pays for every cell sent. The table remembers what each cell shows and
calls ``update_cell`` only for those that changed; rows are rebuilt only when modems are
added, removed or reordered, or the column set changes with the terminal's width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from rich.text import Text
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable

from agent.status import ModemStatus, SlotActivity, TakeoffMark
from tui import format as fmt
from tui.safe import safe_text
from tui.view import SiteView

WIDE = 120  # columns from which registration, operator and fault get their own column


@dataclass(frozen=True)
class Row:
    modem: ModemStatus
    activity: SlotActivity
    mark: TakeoffMark | None
    live: bool
    now: float


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None
    cell: Callable[[Row], Text]
    wide_only: bool = False


def _modem(row: Row) -> Text:
    if not row.live:
        return Text("? unknown", style="bright_black")
    return fmt.modem_state(row.modem.state)


def _last(row: Row) -> Text:
    at = row.activity.last_sms_at
    return Text(fmt.age(None if at is None else row.now - at), justify="right")


COLUMNS = (
    Column("slot", "slot", 8, lambda r: safe_text(r.modem.label or r.modem.slot)),
    Column("modem", "modem", 12, _modem),
    Column("signal", "sig", 4, lambda r: fmt.signal(r.modem.signal_bars, r.modem.signal_dbm)),
    Column(
        "registration",
        "network",
        9,
        lambda r: safe_text(r.modem.registration or "-"),
        wide_only=True,
    ),
    Column("sim", "SIM", 9, lambda r: fmt.sim_state(r.modem.sim_state)),
    # E.164 is at most 16 characters with its "+": a cut number would be a wrong one.
    Column("number", "number", 16, lambda r: safe_text(r.modem.number or "?")),
    Column(
        "operator",
        "operator",
        12,
        lambda r: safe_text(r.modem.operator_name or r.modem.operator or "-"),
        wide_only=True,
    ),
    Column("today", "today", 5, lambda r: Text(str(r.activity.sms_today), justify="right")),
    Column("last", "last", 4, _last),
    Column(
        "takeoff",
        "swap",
        4,
        lambda r: Text("⚑ $", style="bold magenta") if r.mark else Text(""),
    ),
    Column("fault", "fault", None, lambda r: safe_text(r.modem.fault or "", "red"), True),
)


class SlotTable(DataTable[Text]):
    """The overview's table; the row key is the slot (the physical USB path)."""

    def __init__(self) -> None:
        self._cell_updates_only = False  # before DataTable's __init__, which refreshes
        super().__init__(id="slots", cursor_type="row", zebra_stripes=False)
        self._columns_shown: tuple[str, ...] = ()
        self._rows_shown: tuple[str, ...] = ()
        self._cells: dict[tuple[str, str], Text] = {}

    def columns_for(self, width: int) -> tuple[Column, ...]:
        return tuple(c for c in COLUMNS if width >= WIDE or not c.wide_only)

    def show(self, view: SiteView) -> None:
        snapshot = view.snapshot
        marks = {mark.slot: mark for mark in snapshot.takeoff if mark.slot}
        modems = sorted(snapshot.modems, key=lambda m: fmt.slot_order(m.slot))
        rows = [
            Row(
                m,
                snapshot.activity.get(m.slot, SlotActivity()),
                marks.get(m.slot),
                view.live,
                view.now,
            )
            for m in modems
        ]
        columns = self.columns_for(self.app.size.width)
        column_keys = tuple(c.key for c in columns)
        row_keys = tuple(m.slot for m in modems)
        if column_keys != self._columns_shown or row_keys != self._rows_shown:
            self._rebuild(columns, rows)
            return
        changed: list[Coordinate] = []
        self._cell_updates_only = True
        try:
            for row_index, row in enumerate(rows):
                for column_index, column in enumerate(columns):
                    value = column.cell(row)
                    if self._cells.get((row.modem.slot, column.key)) != value:
                        self._cells[(row.modem.slot, column.key)] = value
                        self.update_cell(row.modem.slot, column.key, value)
                        changed.append(Coordinate(row_index, column_index))
        finally:
            self._cell_updates_only = False
        for coordinate in changed:
            self.refresh_coordinate(coordinate)

    def refresh(self, *regions: Region, **options: bool) -> Self:
        """``update_cell`` repaints the whole table; while ``show`` updates cells, that
        repaint is skipped and ``show`` repaints just the cells that changed (a cell is a
        few dozen bytes over SSH, the table a few kilobytes)."""
        if self._cell_updates_only and not regions and not any(options.values()):
            return self
        return super().refresh(*regions, **options)

    def _rebuild(self, columns: tuple[Column, ...], rows: list[Row]) -> None:
        selected = self.selected_slot
        self.clear(columns=True)
        self._cells.clear()
        # The last column (the fault) takes the room left: a fixed width, so it does not
        # depend on which rows happened to be there when the table was built.
        used = sum((column.width or 0) + 2 for column in columns) + 2
        for column in columns:
            width = column.width or max(10, self.app.size.width - used - 2)
            self.add_column(column.label, width=width, key=column.key)
        for row in rows:
            values = [column.cell(row) for column in columns]
            for column, value in zip(columns, values, strict=True):
                self._cells[(row.modem.slot, column.key)] = value
            self.add_row(*values, key=row.modem.slot)
        self._columns_shown = tuple(c.key for c in columns)
        self._rows_shown = tuple(r.modem.slot for r in rows)
        if selected in self._rows_shown:
            self.move_cursor(row=self._rows_shown.index(selected))

    @property
    def selected_slot(self) -> str | None:
        if not self._rows_shown or not 0 <= self.cursor_row < len(self._rows_shown):
            return None
        return self._rows_shown[self.cursor_row]
