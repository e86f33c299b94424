"""``simedge sims``: every SIM ever seen on the site, one row per ICCID.

Asks the running agent (it knows which SIMs sit in a slot now); when it does not answer,
reads the database read-only (:func:`agent.store.queries.reading`), as ``simedge
status`` does, and the slot column is where each SIM was last seen. Plain text, or JSON
with ``--json`` (the rows of :class:`agent.status.SimRow`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument, load_config
from agent.status import SIM_COLUMNS, SIM_LEGEND, SimRow

HELP = "list every SIM ever seen: slot, number, balance, active until, SMS, earned, calls"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from agent.errors import SimedgeError

    config = load_config(args, "simedge sims")
    if config is None:
        return EXIT_USAGE
    try:
        rows = _rows_from_agent(config.control_socket)
        if rows is None:
            rows = _rows_from_database(config)
    except SimedgeError as exc:
        print(f"simedge sims: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps([row.to_json() for row in rows], ensure_ascii=False, indent=2))
    else:
        print(render(rows, time.time()))
    return EXIT_OK


def _rows_from_agent(socket: Any) -> list[SimRow] | None:
    from agent.control.client import call
    from agent.control.protocol import ListSims
    from agent.errors import AgentNotRunning

    try:
        return list(call(socket, ListSims()))
    except AgentNotRunning:
        return None


def _rows_from_database(config: Any) -> list[SimRow]:
    from agent.errors import StoreError
    from agent.store import queries

    if not config.database.exists():
        raise StoreError(f"no database at {config.database} (has the agent run?)")
    with queries.reading(config.database):
        return queries.sims(
            time.time(),
            low_balance=config.sims.low_balance,
            keepalive_days=config.sims.keepalive_days,
        )


def render(rows: list[SimRow], now: float) -> str:
    """The rows as a table of ``SIM_COLUMNS``, each column as wide as its widest cell."""
    if not rows:
        return "no SIM seen yet"
    table = [tuple(heading for heading, _ in SIM_COLUMNS), *(row.cells(now) for row in rows)]
    widths = [max(w, *(len(line[i]) for line in table)) for i, (_, w) in enumerate(SIM_COLUMNS)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.append(f"{len(rows)} SIM(s). {SIM_LEGEND}")
    return "\n".join(lines)
