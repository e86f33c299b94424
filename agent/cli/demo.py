"""``simedge demo``: the whole site on emulated hardware, with nothing to configure.

In one process and a temporary folder it starts a hub of emulated modems, the OnlineSim
stand-in (which calls the agent's webhook as the real service does), and the real agent
configured on them, then sends a realistic SMS every few seconds to a random modem and,
now and then, rings one (the agent records the call and rejects it). Some SIMs start with
numbers that neither +CNUM nor USSD give; they find them by texting a SIM whose number is
known ([sims] probe_sms_per_day is set for the demo; docs/sims.md). On a
terminal it opens the dashboard (``simedge tui``, a separate process as on a real site)
and stops when the dashboard is closed; elsewhere it prints a status line now and then.
Everything it writes stays in the folder: the configuration, the database, the log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli import EXIT_OK, run_on_event_loop, stop_on_signals

if TYPE_CHECKING:
    from agent.emulate.modems import Hub
    from agent.emulate.onlinesim import OnlineSimStandIn
    from agent.supervisor import Agent

HELP = "run the whole site on emulated modems and the OnlineSim stand-in (no set-up)"
READY_PREFIX = "simedge demo ready"

# What the numbers on a reseller site receive all day: codes, mostly.
SAMPLE_SMS = (
    ("VKcom", "VK: 482913 — код для входа. Никому не сообщайте его."),
    ("Telegram", "Telegram code: 73914. You can also tap on this link to log in."),
    ("Google", "G-583920 is your Google verification code."),
    ("WhatsApp", "Your WhatsApp code: 294-118. Don't share this code with others."),
    ("Uber", "Your Uber code is 5521. Never share this code. Reply STOP ALL to unsubscribe."),
    ("+79161234567", "Привет! Это обычное сообщение, не код 🙂"),
    (
        "Avito",
        "Код подтверждения: 6617. Никому его не говорите, даже сотрудникам Авито. "
        "Если вы не запрашивали код, проигнорируйте это сообщение и проверьте, "
        "не заходил ли кто-то в ваш аккаунт с другого устройства.",
    ),
)


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
        "--unknown-numbers",
        type=int,
        default=None,
        metavar="N",
        help="SIMs whose number only an SMS they send can tell (default: a third of them)",
    )
    parser.add_argument(
        "--every",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="an SMS to a random modem this often (default 3; 0: none)",
    )
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
        help="stop after this many seconds (default: run until stopped)",
    )
    parser.add_argument(
        "--no-tui", action="store_true", help="print status lines instead of opening the dashboard"
    )


def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        folder = args.dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="simedge-demo-"))
        )
        folder.mkdir(parents=True, exist_ok=True)
        return run_on_event_loop(_demo(args, folder))
    return EXIT_OK  # pragma: no cover - the with block always returns


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_config(folder: Path, api_url: str, key: str, token: str, port: int) -> Path:
    path = folder / "simedge.toml"
    path.write_text(
        "# Written by simedge demo: the agent of the demo runs on this file.\n"
        f'[onlinesim]\nbase_url = "{api_url}"\napi_key = "{key}"\n'
        "takeoff_sum = 20\ntakeoff_interval = 30\n\n"
        f'[site]\ndata_dir = "data"\n\n'
        f'[modems]\nports = ["{folder / "modems"}/*"]\nhealth_interval = 10\n\n'
        f'[webhook]\nlisten = "127.0.0.1:{port}"\ntoken = "{token}"\n\n'
        f'[control]\nsocket = "control.sock"\n\n'
        "# The demo's SIMs with unknown numbers find them by texting a known one.\n"
        "[sims]\nprobe_sms_per_day = 20\n"
    )
    return path


async def _demo(args: argparse.Namespace, folder: Path) -> int:
    from agent import config as config_module
    from agent import logs
    from agent.emulate.modems import Hub
    from agent.emulate.onlinesim import OnlineSimStandIn
    from agent.supervisor import Agent

    show_tui = sys.stdout.isatty() and not args.no_tui
    key, token, port = secrets.token_hex(16), secrets.token_hex(16), _free_port()
    unknown = args.modems // 3 if args.unknown_numbers is None else args.unknown_numbers
    unknown = max(0, min(unknown, args.modems - 1))  # one SIM must know its number
    hub = Hub(
        folder / "modems",
        count=args.modems,
        profile=args.profile,
        seed=args.seed,
        hidden_numbers=unknown,
    )
    webhook = f"http://127.0.0.1:{port}/onlinesim/numbers?token={token}"
    standin = OnlineSimStandIn(key=key, webhook_url=webhook, webhook_interval=30, seed=args.seed)
    stop = stop_on_signals()
    log_file = (folder / "agent.log").open("a")
    try:
        url = await standin.start()
        await hub.start()
        config = config_module.load(
            _write_config(folder, f"{url}/api/resellers", key, token, port), environ={}
        )
        logs.setup(
            config.log_level, secrets=config.secrets(), stream=log_file if show_tui else sys.stderr
        )
        agent = Agent(config, auto_discovery=False, by_path_dir=folder / "no-usb")
        agent_task = asyncio.create_task(agent.run(stop))
        async with asyncio.timeout(30):
            await agent.started.wait()
        print(f"{READY_PREFIX}: folder {folder}", flush=True)
        print(
            f"  OnlineSim stand-in  {url}  (what it received: "
            f"{standin.control_url}/_standin/messages)"
        )
        print(f"  emulated modems     {args.modems} x {args.profile} in {folder / 'modems'}")
        print(
            f"  unknown numbers     {unknown} SIMs start without one and find it by an SMS "
            "to a known SIM"
        )
        print(f"  agent               simedge status --config {folder / 'simedge.toml'}")
        print(f"  dashboard           simedge tui --config {folder / 'simedge.toml'}")
        print(
            f"  send an SMS         simedge emulate inject --dir {folder / 'modems'} "
            "--modem 0 --sender VKcom --text 'VK: 123456'",
            flush=True,
        )
        traffic = asyncio.create_task(_traffic(hub, standin, args.every, args.seed))
        waiters = [asyncio.create_task(stop.wait()), agent_task]
        if show_tui:
            dashboard = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agent.cli",
                "tui",
                "--socket",
                str(config.control_socket),
                "--db",
                str(config.database),
            )
            waiters.append(asyncio.create_task(dashboard.wait()))
        else:
            waiters.append(asyncio.create_task(_report(agent, standin)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        traffic.cancel()
        for waiter in waiters:
            if waiter is not agent_task:
                waiter.cancel()
        if show_tui and dashboard.returncode is None:
            dashboard.terminate()
            await dashboard.wait()
        await agent_task
    finally:
        await hub.stop()
        await standin.stop()
        logging.getLogger().handlers.clear()
        log_file.close()
    print("simedge demo stopped", file=sys.stderr)
    return EXIT_OK


async def _traffic(hub: Hub, standin: OnlineSimStandIn, every: float, seed: int) -> None:
    """An SMS to a random modem every ``every`` seconds; now and then a number earns enough
    to be listed by takeOffNumbers, so the demo shows "swap SIM in slot ..." too."""
    from agent.errors import EmulatorError

    if every <= 0:
        return
    rng = random.Random(seed)
    sent = 0
    while True:
        await asyncio.sleep(every)
        sender, text = rng.choice(SAMPLE_SMS)
        hub.inject(rng.randrange(len(hub.slots)), sender, text)
        sent += 1
        if sent % 7 == 0:
            with contextlib.suppress(EmulatorError):  # that modem rings already, or is off
                hub.call(rng.randrange(len(hub.slots)), f"+7903{rng.randrange(10**7):07d}")
        if sent % 10 == 0 and standin.state.online:
            number = rng.choice(list(standin.state.online))
            standin.state.earnings[number] = 25.0 + sent


async def _report(agent: Agent, standin: OnlineSimStandIn) -> None:
    """Without a terminal: one status line every ten seconds."""
    from agent.status import NumberSource

    while True:
        modems = agent.fleet.modems() if agent.fleet else []
        ready = sum(1 for m in modems if str(m.state) == "ready")
        probed = sum(1 for m in modems if m.number_source is NumberSource.SMS_PROBE)
        print(
            f"{time.strftime('%H:%M:%S')} modems ready {ready}/{len(modems)}, "
            f"numbers online {len(standin.state.online)} ({probed} found by SMS probe), "
            f"SMS forwarded {len(standin.state.messages)}",
            flush=True,
        )
        await asyncio.sleep(10)
