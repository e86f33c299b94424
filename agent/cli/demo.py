"""``simedge demo``: the emulated site, with nothing to configure.

It starts, in one process and a temporary folder, the OnlineSim stand-in and a hub of
emulated modems, prints where each part is and how to poke it, and runs until Ctrl-C
(or for ``--for SECONDS``). The agent and the dashboard join it as they are built.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from agent.cli import EXIT_OK

HELP = "run the whole site on emulated modems and the OnlineSim stand-in (no set-up)"
READY_PREFIX = "simedge demo ready"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--modems", type=int, default=8, metavar="N", help="number of emulated modems (default 8)"
    )
    parser.add_argument(
        "--profile",
        default="mixed",
        help="modem profile: sim800, ec25, huawei, pool or mixed (default)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the emulated world")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="folder for the demo's files (default: a new temporary folder)",
    )
    parser.add_argument(
        "--for",
        dest="duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )


def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        folder = args.dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="simedge-demo-"))
        )
        folder.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(args, folder))
    return EXIT_OK  # pragma: no cover - the with block always returns


async def _demo(args: argparse.Namespace, folder: Path) -> int:
    from agent.emulate.modems import Hub
    from agent.emulate.onlinesim import OnlineSimStandIn

    key = secrets.token_hex(16)
    standin = OnlineSimStandIn(key=key, seed=args.seed)
    hub = Hub(folder / "modems", count=args.modems, profile=args.profile, seed=args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        url = await standin.start()
        await hub.start()
        modems = folder / "modems"
        print(f"{READY_PREFIX}: folder {folder}", flush=True)
        print(f"  OnlineSim stand-in  {url}  (control: {standin.control_url}/_standin/requests)")
        print(f"  emulated modems     {args.modems} x {args.profile} in {modems}")
        print("  try:")
        print(f"    simedge emulate list --dir {modems}")
        print(
            f"    simedge emulate inject --dir {modems} --modem 0 --sender VKcom "
            "--text 'VKcom 123456'"
        )
        print("  Ctrl-C stops the demo.", flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                await stop.wait()
    finally:
        await hub.stop()
        await standin.stop()
    print("simedge demo stopped", file=sys.stderr)
    return EXIT_OK
