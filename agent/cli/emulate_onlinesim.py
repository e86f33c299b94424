"""``simedge emulate onlinesim``: the OnlineSim stand-in as a process.

It prints one line, ``onlinesim stand-in ready url=URL control=URL``, once both listeners
accept connections, so that scripts wait on that line instead of sleeping; it runs until
SIGINT or SIGTERM and then exits 0. The control protocol is described in
:mod:`agent.emulate.onlinesim`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from agent.cli import EXIT_OK, EXIT_USAGE, stop_on_signals

HELP = "run the OnlineSim reseller API stand-in (with fault injection and a control API)"
READY_PREFIX = "onlinesim stand-in ready"


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=host_port,
        default=("127.0.0.1", 8765),
        metavar="HOST:PORT",
        help="address of the API listener (default 127.0.0.1:8765; port 0 picks one)",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=0,
        metavar="PORT",
        help="port of the control listener on the same host (default 0: pick one)",
    )
    parser.add_argument("--key", required=True, help="the API key the stand-in accepts")
    parser.add_argument(
        "--webhook", metavar="URL", help="the agent's webhook URL, called as OnlineSim does"
    )
    parser.add_argument(
        "--webhook-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between webhook calls (default 60)",
    )
    parser.add_argument(
        "--error-body",
        choices=("json", "text"),
        default="json",
        help='error bodies as {"response": "CODE"} (json, default) or the bare code (text)',
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault dice")
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE.jsonl",
        help="append every API request, as answered, to this file as a JSON line",
    )


def run(args: argparse.Namespace) -> int:
    from agent.errors import EmulatorError

    try:
        return asyncio.run(_serve(args))
    except EmulatorError as exc:
        print(f"simedge emulate onlinesim: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def _serve(args: argparse.Namespace) -> int:
    from agent.emulate.onlinesim import OnlineSimStandIn

    standin = OnlineSimStandIn(
        key=args.key,
        webhook_url=args.webhook,
        webhook_interval=args.webhook_interval,
        error_body=args.error_body,
        seed=args.seed,
        record_path=args.record,
    )
    stop = stop_on_signals()
    host, port = args.listen
    try:
        await standin.start(host, port, control_port=args.control_port)
        print(f"{READY_PREFIX} url={standin.url} control={standin.control_url}", flush=True)
        await stop.wait()
    finally:
        await standin.stop()
    return EXIT_OK


SUBCOMMANDS = {"onlinesim": (HELP, configure, run)}
