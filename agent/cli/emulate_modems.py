"""``simedge emulate modems|inject|fault|list``: the emulated modems and their remote control.

``modems`` runs the hub (see :mod:`agent.emulate.modems.hub` for the folder layout); it
prints ``modem hub ready modems=N ports=M dir=DIR control=SOCK`` once every pty and the
control socket exist, and runs until SIGINT/SIGTERM. The other three talk to a running hub
over ``DIR/control.sock`` (protocol: :mod:`agent.emulate.modems.control`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, stop_on_signals
from agent.emulate.modems.hub import FAULT_KINDS
from agent.emulate.modems.profiles import PROFILE_NAMES

READY_PREFIX = "modem hub ready"


def _tz(text: str) -> int:
    """``+QQ`` in quarter hours (as SCTS carries it: +12 is UTC+3) or ``+HH:MM``."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    try:
        if ":" in body:
            hours, minutes = body.split(":", 1)
            return sign * (int(hours) * 4 + int(minutes) // 15)
        return sign * int(body)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected +QQ (quarter hours) or +HH:MM, got {text!r}"
        ) from None


def _seconds(text: str) -> float:
    """A duration in seconds, 0 or more."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected 0 seconds or more, got {text!r}")
    return seconds


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, help="the hub's folder")


def _add_modem(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--modem",
        required=True,
        metavar="K",
        help="modem index, slot (USB path such as 1-1.1.2) or port symlink",
    )


# ------------------------------------------------------------------------- modems

MODEMS_HELP = "run emulated USB GSM modems on pseudo-terminals with by-path style symlinks"


def configure_modems(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=4, help="how many modems (default 4)")
    _add_dir(parser)
    parser.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default="sim800",
        help="which module to emulate (default sim800; mixed draws per slot)",
    )
    parser.add_argument("--seed", type=int, default=0, help="makes identities reproducible")
    parser.add_argument(
        "--noise-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="period of DIAG/NMEA/^RSSI noise (default 2; 0 turns it off)",
    )
    parser.add_argument(
        "--cnma-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long a +CMT waits for +CNMA before delivery turns off",
    )
    parser.add_argument(
        "--sms-delay",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="how long an SMS between two SIMs of the hub takes to arrive (default 3)",
    )
    parser.add_argument(
        "--ussd-delay",
        type=_seconds,
        default=0.3,
        metavar="SECONDS",
        help="how long the network takes to answer a USSD question (default 0.3; longer "
        "than the agent's 20 s wait: a network that never answers)",
    )
    parser.add_argument(
        "--hidden-numbers",
        type=int,
        default=0,
        metavar="N",
        help="the first N SIMs neither store their number nor get it by USSD",
    )


def run_modems(args: argparse.Namespace) -> int:
    from agent.errors import EmulatorError

    try:
        return asyncio.run(_serve(args))
    except EmulatorError as exc:
        print(f"simedge emulate modems: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def _serve(args: argparse.Namespace) -> int:
    from agent.emulate.modems.hub import Hub

    hub = Hub(
        args.dir,
        count=args.count,
        profile=args.profile,
        seed=args.seed,
        noise_interval=args.noise_interval,
        cnma_timeout=args.cnma_timeout,
        sms_delay=args.sms_delay,
        hidden_numbers=args.hidden_numbers,
        ussd_delay=args.ussd_delay,
    )
    stop = stop_on_signals()
    try:
        await hub.start()
        ports = sum(len(slot.ports) for slot in hub.slots)
        print(
            f"{READY_PREFIX} modems={len(hub.slots)} ports={ports} dir={args.dir} "
            f"control={hub.control_path}",
            flush=True,
        )
        await stop.wait()
    finally:
        await hub.stop()
    return EXIT_OK


# --------------------------------------------------------------- client commands

INJECT_HELP = "deliver an SMS to an emulated modem as an SMSC would; prints its id"


def configure_inject(parser: argparse.ArgumentParser) -> None:
    _add_dir(parser)
    _add_modem(parser)
    parser.add_argument("--sender", required=True, help='"+7916...", national digits or "VKcom"')
    parser.add_argument("--text", required=True, help="the text; {n} is the message number")
    parser.add_argument("--shuffle-parts", action="store_true", help="deliver parts out of order")
    parser.add_argument("--drop-part", type=int, metavar="N", help="never deliver part N")
    parser.add_argument("--duplicate-part", type=int, metavar="N", help="deliver part N twice")
    parser.add_argument(
        "--class",
        dest="message_class",
        type=int,
        choices=(0, 1, 2, 3),
        help="message class (23.038)",
    )
    parser.add_argument(
        "--tz",
        type=_tz,
        dest="tz_quarters",
        metavar="+QQ",
        help="SCTS time zone in quarter hours (+12 = UTC+3) or +HH:MM",
    )
    parser.add_argument("--ref16", action="store_true", help="16-bit concatenation reference")
    parser.add_argument("--count", type=int, default=1, metavar="M", help="send M messages")
    parser.add_argument("--rate", type=float, metavar="R", help="messages per second")


def run_inject(args: argparse.Namespace) -> int:
    options = {
        key: getattr(args, key)
        for key in ("drop_part", "duplicate_part", "message_class", "tz_quarters", "rate")
        if getattr(args, key) is not None
    }
    options.update(shuffle_parts=args.shuffle_parts, ref16=args.ref16, count=args.count)
    answer = _call(
        args.dir, "inject", modem=args.modem, sender=args.sender, text=args.text, **options
    )
    if answer is None:
        return EXIT_FAILURE
    for sms_id in answer["ids"]:
        print(sms_id)
    return EXIT_OK


FAULT_HELP = "make an emulated modem misbehave (hang, unplug, sim-out, storage-full, ...)"


def configure_fault(parser: argparse.ArgumentParser) -> None:
    _add_dir(parser)
    _add_modem(parser)
    parser.add_argument("--kind", choices=FAULT_KINDS, help="what goes wrong")
    parser.add_argument("--clear", action="store_true", help="end hang/slow/garbage")
    parser.add_argument("--seconds", type=float, help="how late a slow modem answers")


def run_fault(args: argparse.Namespace) -> int:
    if args.clear == bool(args.kind):
        print("simedge emulate fault: give exactly one of --kind and --clear", file=sys.stderr)
        return EXIT_USAGE
    kind = "clear" if args.clear else args.kind
    answer = _call(args.dir, "fault", modem=args.modem, kind=kind, seconds=args.seconds)
    return EXIT_OK if answer is not None else EXIT_FAILURE


CALL_HELP = "ring an emulated modem with caller ID until it rejects the call; prints its id"


def configure_call(parser: argparse.ArgumentParser) -> None:
    _add_dir(parser)
    _add_modem(parser)
    parser.add_argument("--caller", required=True, help='the calling number, "+7903..."')
    parser.add_argument(
        "--give-up-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="the caller hangs up after this long (default 30)",
    )


def run_call(args: argparse.Namespace) -> int:
    answer = _call(
        args.dir, "call", modem=args.modem, caller=args.caller, give_up_after=args.give_up_after
    )
    if answer is None:
        return EXIT_FAILURE
    print(answer["call"])
    return EXIT_OK


SIM_HELP = "change what an emulated SIM's network allows: credit, service, a refusal code"


def configure_sim(parser: argparse.ArgumentParser) -> None:
    _add_dir(parser)
    _add_modem(parser)
    parser.add_argument(
        "--credit", choices=("yes", "no"), help="no: every SMS sent fails with +CMS ERROR 21"
    )
    parser.add_argument("--service", choices=("yes", "no"), help="no: off the network")
    parser.add_argument(
        "--refuse", type=int, metavar="CODE", help="every SMS sent fails with +CMS ERROR CODE"
    )
    parser.add_argument("--accept", action="store_true", help="end a --refuse")


def run_sim(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {}
    if args.credit is not None:
        fields["credit"] = args.credit == "yes"
    if args.service is not None:
        fields["service"] = args.service == "yes"
    if args.refuse is not None or args.accept:
        fields["refusal"] = None if args.accept else args.refuse
    if not fields:
        print(
            "simedge emulate sim: give --credit, --service, --refuse or --accept", file=sys.stderr
        )
        return EXIT_USAGE
    return (
        EXIT_OK if _call(args.dir, "sim", modem=args.modem, **fields) is not None else EXIT_FAILURE
    )


LIST_HELP = "show each emulated modem: slot, ports, identities, stored SMS, CNMI, faults"


def configure_list(parser: argparse.ArgumentParser) -> None:
    _add_dir(parser)
    parser.add_argument("--json", action="store_true", help="print the state as JSON")


def run_list(args: argparse.Namespace) -> int:
    answer = _call(args.dir, "list")
    if answer is None:
        return EXIT_FAILURE
    modems: list[dict[str, Any]] = answer["modems"]
    if args.json:
        print(json.dumps(modems, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(
        f"{'#':>3} {'slot':<10} {'profile':<7} {'imei':<15} {'iccid':<20} {'number':<14} "
        f"{'operator':<9} {'SM':>3} {'net':>3} {'cnmi':<9} faults"
    )
    for m in modems:
        state = ",".join(m["faults"]) or ("unplugged" if not m["plugged"] else "-")
        print(
            f"{m['index']:>3} {m['slot']:<10} {m['profile']:<7} {m['imei']:<15} "
            f"{m['iccid'] or '-':<20} {m['number'] or '-':<14} {m['operator'] or '-':<9} "
            f"{m['stored'].get('SM', 0):>3} {m['in_network']:>3} {m['cnmi']:<9} {state}"
        )
    return EXIT_OK


def _call(directory: Path, op: str, **fields: Any) -> dict[str, Any] | None:
    """One control request; prints the hub's refusal and returns None on failure."""
    from agent.emulate.modems.control import ControlClient
    from agent.errors import ControlError

    async def call() -> dict[str, Any]:
        async with ControlClient(directory / "control.sock") as client:
            return await client.request(op, **fields)

    try:
        return asyncio.run(call())
    except ControlError as exc:
        print(f"simedge emulate {op}: {exc}", file=sys.stderr)
        return None


SUBCOMMANDS = {
    "modems": (MODEMS_HELP, configure_modems, run_modems),
    "inject": (INJECT_HELP, configure_inject, run_inject),
    "fault": (FAULT_HELP, configure_fault, run_fault),
    "list": (LIST_HELP, configure_list, run_list),
    "call": (CALL_HELP, configure_call, run_call),
    "sim": (SIM_HELP, configure_sim, run_sim),
}
