"""``simedge scan``: one discovery pass, printed: which modem sits where, with which SIM.

Works before a configuration exists (USB auto-discovery plus ``--port`` globs) and with
one (``--config``: its globs, slot labels and baud rate). Progress goes to stderr, the
result to stdout: a plain-text listing, or JSON with ``--json``
(``{"modems": [...], "ignored": [...]}``, the shape of :class:`agent.status.ScanResult`).
Exit status 0 when the scan ran, even if it found no modem; 2 for a configuration error;
1 when the agent of that configuration is running.

The scan opens the ports, so it does not run beside the agent, which owns them: with
``--config`` it refuses at once, naming the running agent's PID (the agent knows its
modems: see ``simedge status`` and the dashboard). Without a configuration it cannot know
the agent's data folder, but each port is locked as serial programs lock them, so a port
the agent (or minicom, or gammu) holds is listed as in use with its holder, never opened.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_config

if TYPE_CHECKING:
    from pathlib import Path

    from agent.status import ModemStatus, PortInfo, ScanResult

HELP = "find the modems: ports, slots, IMEI, SIM, number, operator, signal"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the simedge TOML configuration")
    parser.add_argument(
        "--port",
        metavar="GLOB",
        action="append",
        default=[],
        help="also look at serial devices matching GLOB (repeatable), e.g. '/dev/ttyAMA0'",
    )
    parser.add_argument(
        "--no-auto",
        action="store_true",
        help="only the configured and --port globs, not every USB serial port of the system",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a listing")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from agent.modem.discovery import scan

    globs = list(args.port)
    options: dict[str, Any] = {}
    if args.config:
        from agent.modem.own_number import recipes

        config = load_config(args, "simedge scan")
        if config is None:
            return EXIT_USAGE
        refusal = _agent_running(config.site.data_dir)
        if refusal:
            print(f"simedge scan: {refusal}", file=sys.stderr)
            return EXIT_FAILURE
        globs = [*config.modems.ports, *globs]
        options = {
            "labels": config.site.slot_labels,
            "baudrate": config.modems.baudrate,
            "command_timeout": config.modems.command_timeout,
            "ussd": recipes(config.modems.ussd),
        }

    progress = Progress(sys.stderr)
    started = time.monotonic()
    result = asyncio.run(scan(globs, auto=not args.no_auto, progress=progress, **options))
    progress.done(result, time.monotonic() - started)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(result))
    return EXIT_OK


def _agent_running(data_dir: Path) -> str | None:
    """Why the scan must not run (an agent holds ``data_dir``), or None. Nothing is held:
    an agent that starts during the scan finds its ports in use and probes them later."""
    from agent.errors import AlreadyRunning
    from agent.locking import DataDirLock

    try:
        DataDirLock.check(data_dir)
    except AlreadyRunning as exc:
        return f"{exc}; it owns the modems: ask it with `simedge status` or `simedge tui`"
    except OSError:
        return None  # not ours to read (another user's folder): the port locks still hold
    return None


class Progress:
    """``probing 12/128 ports`` on stderr, rewritten in place on a terminal; elsewhere (a
    log, a pipe) one line per stage when it starts, so nothing floods."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._said: set[str] = set()

    def __call__(self, stage: str, done: int, total: int) -> None:
        noun = "ports" if stage == "probing" else "modems"
        if self.live:
            self.stream.write(f"\r\x1b[K{stage} {done}/{total} {noun}…")
            self.stream.flush()
        elif stage not in self._said and total:
            self._said.add(stage)
            self.stream.write(f"{stage} {total} {noun}…\n")

    def done(self, result: ScanResult, seconds: float) -> None:
        end = "\r\x1b[K" if self.live else ""
        self.stream.write(
            f"{end}found {len(result.modems)} modems, ignored {len(result.ignored)} ports "
            f"in {seconds:.1f}s\n"
        )
        self.stream.flush()


def _safe(value: object) -> str:
    """Modem and SIM strings are untrusted: no terminal control characters get through."""
    text = "-" if value is None or value == "" else str(value)
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def render(result: ScanResult) -> str:
    """The plain-text listing: a block per modem, then the ignored ports with why."""
    lines: list[str] = []
    if not result.modems:
        lines.append("no modems found")
    for modem in result.modems:
        lines.extend(_modem_block(modem))
        lines.append("")
    if result.ignored:
        lines.append("ignored ports:")
        lines.extend(_ignored_line(port) for port in result.ignored)
    return "\n".join(lines).rstrip("\n") + "\n"


def _modem_block(modem: ModemStatus) -> list[str]:
    label = f" ({_safe(modem.label)})" if modem.label else ""
    model = " ".join(_safe(part) for part in (modem.manufacturer, modem.model) if part)
    state = f"{modem.state}" + (f": {_safe(modem.fault)}" if modem.fault else "")
    number = _safe(modem.number)
    if modem.number:
        number += f" (from {modem.number_source})"
    signal = f"{modem.signal_dbm} dBm" if modem.signal_dbm is not None else "-"
    operator = _safe(modem.operator)
    if modem.operator_name:
        operator += f" {_safe(modem.operator_name)}"
    return [
        f"slot {_safe(modem.slot)}{label}: {model or 'unknown model'} [{state}]",
        f"  ports     {', '.join(_safe(p) for p in modem.ports)}",
        f"  IMEI      {_safe(modem.imei)}",
        f"  SIM       {modem.sim_state}  ICCID {_safe(modem.iccid)}  IMSI {_safe(modem.imsi)}",
        f"  number    {number}",
        f"  operator  {operator}  signal {signal}  registration {_safe(modem.registration)}",
    ]


def _ignored_line(port: PortInfo) -> str:
    return f"  {_safe(port.device)}  {port.role}: {_safe(port.why)}"
