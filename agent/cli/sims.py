"""``simedge sims``: every SIM ever seen on the site, one row per ICCID.

Asks the running agent (it knows which SIMs sit in a slot now); when it does not answer,
reads the database read-only (:func:`agent.store.queries.read_only`), as ``simedge
status`` does, and the slot column is where each SIM was last seen. Plain text, or JSON
with ``--json`` (the rows of :class:`agent.status.SimRow`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument

HELP = "list every SIM ever seen: slot, number, balance, active until, SMS, earned"

COLUMNS = (
    # (heading, width): what a person reads first goes left; the ICCID identifies the card.
    ("SLOT", 10),
    ("ICCID", 20),
    ("NUMBER", 14),
    ("SOURCE", 7),
    ("NET", 6),
    ("BALANCE", 14),
    ("ACTIVE UNTIL", 12),
    ("TODAY", 5),
    ("7 DAYS", 6),
    ("ALL", 6),
    ("EARNED", 7),
    # Calls and own-number probe failures join here when the agent records them.
)


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from agent.config import load
    from agent.errors import ConfigError, ControlError, SimedgeError

    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"simedge sims: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        rows = _rows_from_agent(config.control_socket)
        if rows is None:
            rows = _rows_from_database(config)
    except (ControlError, SimedgeError) as exc:
        print(f"simedge sims: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        print(render(rows, time.time(), config.sims.low_balance))
    return EXIT_OK


def _rows_from_agent(socket: Any) -> list[dict[str, Any]] | None:
    from agent.control.client import call
    from agent.errors import AgentNotRunning

    try:
        return list(call(socket, "sims"))
    except AgentNotRunning:
        return None


def _rows_from_database(config: Any) -> list[dict[str, Any]]:
    from agent.errors import StoreError
    from agent.store import queries

    if not config.database.exists():
        raise StoreError(f"no database at {config.database} (has the agent run?)")
    with queries.read_only(config.database):
        rows = queries.sims(
            time.time(),
            low_balance=config.sims.low_balance,
            keepalive_days=config.sims.keepalive_days,
        )
    return [row.to_json() for row in rows]


def _date(seconds: float | None) -> str:
    return "-" if seconds is None else datetime.fromtimestamp(seconds).strftime("%Y-%m-%d")


def cells(row: dict[str, Any], now: float) -> list[str]:
    """One SIM's cells, in COLUMNS order (shared with the dashboard's SIMs screen)."""
    slot = row["slot"] or "-"
    if row["slot"] and not row["in_slot"]:
        slot += " (last)"
    if row["balance"] is None:
        balance = "?" if not row["balance_error"] else "unreadable"
    else:
        balance = f"{row['balance']:.2f} {row['balance_currency'] or ''}".strip()
        if row["balance_low"]:
            balance += " LOW"
    active = _date(row["active_until"])
    if row["active_until"] is not None and row["active_until"] < now:
        active += "!"
    earned = "-" if row["earned"] is None else f"{row['earned']:g}"
    return [
        slot,
        row["iccid"],
        row["number"] or "?",
        row["number_source"] or "-",
        row["operator"] or "-",
        balance,
        active,
        str(row["sms_today"]),
        str(row["sms_7d"]),
        str(row["sms_all"]),
        earned,
    ]


def render(rows: list[dict[str, Any]], now: float, low_balance: float) -> str:
    if not rows:
        return "no SIM seen yet"
    table = [[heading for heading, _ in COLUMNS], *(cells(row, now) for row in rows)]
    widths = [max(width, *(len(line[i]) for line in table)) for i, (_, width) in enumerate(COLUMNS)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.append(
        f"{len(rows)} SIMs; LOW: balance below {low_balance:g}; ACTIVE UNTIL with !: lapsed"
        " (a keep-alive policy covers its network)"
    )
    return "\n".join(lines)
