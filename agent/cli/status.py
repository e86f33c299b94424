"""``simedge status``: the uplink, the outbox and the take-off marks, from the database.

Reads the store read-only (SQLite ``mode=ro``), with the agent's own read queries
(:mod:`agent.store.queries`, as the dashboard does when the agent is down), so it is safe
beside a running agent and says what the agent would: the
uplink's last recorded state, the numbers OnlineSim last accepted ("not yet sent" before
any), pending, in back-off, dead, blocked and assembling messages, the last success and
the last error (the uplink's included: a pause on a wrong key fails no message), and one
line "swap SIM in slot X (sum RUB)" per open take-off mark. Whether the store can write
now lives only in the running agent's memory: it is asked of the agent (its ``health``,
what ``/healthz`` says), whose live uplink state then replaces the recorded one; when it
does not answer, that is said. With ``[webhook] public_url`` set: the webhook URL to paste
into OnlineSim and whether the agent last found it reachable, and since when (the agent
logs each change). Plain text, or JSON with ``--json``. Exit status 0; 1 when
there is no database yet or it cannot be read; 2 for a
configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument, load_config

HELP = "show the uplink and its last error, the numbers online, the outbox and SIMs to swap"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from agent.errors import StoreError
    from agent.store import queries

    config = load_config(args, "simedge status")
    if config is None:
        return EXIT_USAGE
    path = config.database
    if not path.exists():
        print(f"simedge status: no database at {path} (has the agent run?)", file=sys.stderr)
        return EXIT_FAILURE
    try:
        with queries.reading(path):
            report = read_status(time.time())
            if config.webhook.public_url:
                report["public_url"] = read_public_url(config.webhook.public_webhook_url)
    except StoreError as exc:
        print(f"simedge status: {path}: {exc}; `simedge db check` says more", file=sys.stderr)
        return EXIT_FAILURE
    report["agent"] = agent_health(config.control_socket)
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report))
    return EXIT_OK


def read_status(now: float) -> dict[str, Any]:
    """The uplink, the numbers online, the outbox counts and open take-off marks, inside
    :func:`agent.store.queries.reading`."""
    from agent.store import queries

    uplink = queries.recorded_uplink()
    outbox = queries.outbox_status(now)
    if uplink is not None:
        outbox = outbox.with_uplink_error(uplink)
    accepted = queries.numbers_online()
    return {
        "uplink": None
        if uplink is None
        else {"state": str(uplink.state), "code": uplink.code, "since": _iso(uplink.since)},
        "numbers_online": None
        if accepted is None
        else {"count": accepted.count, "accepted_at": _iso(accepted.accepted_at)},
        "outbox": {
            "pending": outbox.pending,
            "backing_off": outbox.backing_off,
            "dead": outbox.dead,
            "blocked": outbox.blocked,
            "assembling": outbox.assembling,
            "last_success_at": _iso(outbox.last_success_at),
            "last_error": outbox.last_error,
            "last_error_at": _iso(outbox.last_error_at),
        },
        "takeoff": [
            {
                "slot": mark.slot,
                "iccid": mark.iccid,
                "number": mark.number,
                "sum": mark.sum_rub,
                "at": _iso(mark.marked_at),
            }
            for mark in queries.open_takeoff_marks()
        ],
    }


def agent_health(socket: Any) -> dict[str, Any] | None:
    """The running agent's health (uplink state, store writable); None when no agent
    listens. An agent that listens but does not answer (still starting, or every control
    slot taken) is not "not running": it is said so, with the recorded state beside it."""
    from pathlib import Path

    from agent.control.client import call
    from agent.control.protocol import CheckHealth
    from agent.errors import AgentNotRunning, ControlError

    if not Path(socket).exists():
        return None
    try:
        health: dict[str, Any] = call(socket, CheckHealth())
    except (AgentNotRunning, OSError):
        return None
    except ControlError as exc:
        return {"agent": f"running, not answering ({exc})", "uplink": None, "store": None}
    return health


UPLINK_WORDS = {
    "ok": "ok",
    "backing_off": "link down, backing off",
    "paused": "PAUSED (account refused)",
    "store_not_writable": "PAUSED: store not writable",
}


def read_public_url(url: str) -> dict[str, Any]:
    """The public webhook URL and the agent's last word on it (its newest "public_url"
    event): "up", "down", or "unknown" when it has not checked yet. Inside
    :func:`agent.store.queries.reading`."""
    from agent.store import queries

    last = queries.last_event("public_url")
    if last is None:
        return {"url": url, "state": "unknown", "since": None, "detail": None}
    return {
        "url": url,
        "state": "up" if last.level == "info" else "down",
        "since": _iso(last.at),
        "detail": last.text,
    }


def render(report: dict[str, Any]) -> str:
    outbox, accepted = report["outbox"], report["numbers_online"]
    health = report.get("agent")
    if health is None:
        lines = ["agent          not running (uplink as last recorded)"]
        uplink = report["uplink"]
    else:
        lines = [f"agent          {health['agent']}"]
        uplink = health["uplink"] or report["uplink"]
    if uplink is None:
        uplink_line = "unknown (not recorded yet)"
    else:
        uplink_line = UPLINK_WORDS.get(uplink["state"], uplink["state"])
        uplink_line += f" ({uplink['code']})" if uplink.get("code") else ""
        since = uplink.get("since")
        if isinstance(since, str):  # the recorded state's time; the live one says "now"
            uplink_line += f" since {since}"
    lines.append(f"uplink         {uplink_line}")
    if health is not None and health["store"] is not None:
        lines.append(
            f"store          {'writable' if health['store']['writable'] else 'NOT WRITABLE'}"
        )
    lines += [
        "numbers online "
        + (
            "not yet sent (OnlineSim has accepted no list)"
            if accepted is None
            else f"{accepted['count']} (list accepted at {accepted['accepted_at']})"
        ),
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


def _iso(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC, to the second."""
    if seconds is None:
        return None
    return (
        datetime.fromtimestamp(seconds, UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )
