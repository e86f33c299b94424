"""``simedge status``: the outbox and the take-off marks, read from the database.

Reads the store read-only (SQLite ``mode=ro``), so it is safe beside a running agent:
pending, in back-off, dead, blocked and assembling messages, the last success and the
last error, and one line "swap SIM in slot X (sum RUB)" per open take-off mark. With
``[webhook] public_url`` set: the webhook URL to paste into OnlineSim and whether the
agent last found it reachable, and since when (the agent logs each change). Plain
text, or JSON with ``--json``. Exit status 0; 1 when there is no database yet; 2 for a
configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument

HELP = "show the outbox (pending, back-off, dead, last error) and SIMs to swap"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    import sqlite3

    from agent.config import load
    from agent.errors import ConfigError

    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"simedge status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = config.database
    if not path.exists():
        print(f"simedge status: no database at {path} (has the agent run?)", file=sys.stderr)
        return EXIT_FAILURE
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        report = read_status(connection)
        if config.webhook.public_url:
            report["public_url"] = read_public_url(connection, config.webhook.public_webhook_url)
    finally:
        connection.close()
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report))
    return EXIT_OK


def read_status(connection: Any) -> dict[str, Any]:
    """The outbox counts and open take-off marks, from a read-only sqlite3 connection."""
    states = dict(
        connection.execute(
            "SELECT state, COUNT(*) FROM message WHERE state != 'sent' GROUP BY state"
        ).fetchall()
    )
    (backing_off,) = connection.execute(
        "SELECT COUNT(*) FROM message WHERE state = 'pending' AND next_attempt_at > ?",
        (_utc_now_text(),),
    ).fetchone()
    (last_success,) = connection.execute(
        "SELECT MAX(sent_at) FROM message WHERE state = 'sent'"
    ).fetchone()
    last_error = connection.execute(
        "SELECT at, error FROM delivery_attempt WHERE outcome != 'sent' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    # Open marks of the SIM each slot holds now (the most recently seen one there).
    marks = connection.execute(
        "SELECT last_slot, iccid, number, takeoff_sum, takeoff_at FROM sim AS s"
        " WHERE takeoff_at IS NOT NULL AND takeoff_done_at IS NULL AND NOT EXISTS ("
        "  SELECT 1 FROM sim AS newer WHERE newer.last_slot = s.last_slot"
        "  AND newer.last_seen > s.last_seen)"
        " ORDER BY last_slot"
    ).fetchall()
    return {
        "outbox": {
            "pending": states.get("pending", 0) - backing_off,
            "backing_off": backing_off,
            "dead": states.get("dead", 0),
            "blocked": states.get("blocked", 0),
            "assembling": states.get("assembling", 0),
            "last_success_at": _utc(last_success),
            "last_error": last_error[1] if last_error else None,
            "last_error_at": _utc(last_error[0]) if last_error else None,
        },
        "takeoff": [
            {"slot": slot, "iccid": iccid, "number": number, "sum": total, "at": _utc(at)}
            for slot, iccid, number, total, at in marks
        ],
    }


def read_public_url(connection: Any, url: str) -> dict[str, Any]:
    """The public webhook URL and the agent's last word on it (its newest "public_url"
    event): "up", "down", or "unknown" when it has not checked yet."""
    last = connection.execute(
        "SELECT at, level, text FROM event WHERE kind = 'public_url' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if last is None:
        return {"url": url, "state": "unknown", "since": None, "detail": None}
    at, level, text = last
    return {
        "url": url,
        "state": "up" if level == "info" else "down",
        "since": _utc(at),
        "detail": text,
    }


def render(report: dict[str, Any]) -> str:
    outbox = report["outbox"]
    lines = [
        "outbox",
        f"  pending      {outbox['pending']}",
        f"  in back-off  {outbox['backing_off']}",
        f"  dead         {outbox['dead']}",
        f"  blocked      {outbox['blocked']}",
        f"  assembling   {outbox['assembling']}",
        f"  last success {outbox['last_success_at'] or 'never'}",
        f"  last error   {outbox['last_error'] or 'none'}"
        + (f" (at {outbox['last_error_at']})" if outbox["last_error_at"] else ""),
    ]
    public_url = report.get("public_url")
    if public_url:
        lines += [
            "public URL (paste into OnlineSim, TOKEN from the token file)",
            f"  {public_url['url']}",
            f"  {public_url['state']}"
            + (
                f" since {public_url['since']}: {public_url['detail']}"
                if public_url["since"]
                else ""
            ),
        ]
    if report["takeoff"]:
        lines.append("take-off")
        for mark in report["takeoff"]:
            lines.append(
                f"  swap SIM in slot {mark['slot'] or '?'} ({mark['sum']:g} RUB)"
                f"  {mark['number'] or ''} ICCID {mark['iccid']}"
            )
    return "\n".join(lines) + "\n"


def _utc_now_text() -> str:
    return str(datetime.now(UTC).replace(tzinfo=None))


def _utc(text: str | None) -> str | None:
    """The store's naive-UTC text as ISO 8601 with its zone."""
    return None if text is None else text.replace(" ", "T") + "Z"
