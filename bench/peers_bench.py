"""simedge beside gammu-smsd, smstools3 and python-gsmmodem-new on the same modems.

Every receiver gets a fresh hub of the same 64 emulated SIM800 modems (same seed, so the
same SIMs) and the same SMS stream. A pass: start the hub and the receiver; one warm-up
SMS per modem, waited for, proves every modem is being read; then an idle window (CPU),
then SMS at a steady rate round-robin over the modems (latency and CPU), then a drain
of up to ``DRAIN`` seconds for the stragglers. Latency is the hub's ``injected`` stamp to
the moment the receiver stored the SMS (see :mod:`bench.peers`); simedge is timed to the
stand-in's receipt of addMessage, so it carries the SQLite commit and the upload that
the peers do not. CPU counts the receiver's processes only (for simedge the agent, not
the stand-in); the hub runs in its own process. Ratios are peer / simedge.

A peer that is not installed gets a row saying so (``make bench`` installs them as root).
Durations: ``SIMEDGE_BENCH_PEER_IDLE_SECONDS`` (default 20) and
``SIMEDGE_BENCH_PEER_LOAD_SECONDS`` (default 30).

    python -m bench peers_bench
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import Result
from bench.peers import Peer, tree_cpu
from bench.peers.gammu import GammuSmsd
from bench.peers.pygsmmodem import GsmModemLibrary
from bench.peers.smstools import Smstools
from bench.site import (
    Process,
    StandIn,
    at_ports,
    inject_steadily,
    latencies_ms,
    percentiles,
    start_agent,
    start_hub,
    start_standin,
    until,
)

MODEMS = 64
RATE = 20.0
SEED = 23
WARM_UP = 180.0  # seconds for one SMS per modem to be stored (gammu's default polls at 30 s)
DRAIN = 90.0
COMMAND = "python -m bench peers_bench"


class Simedge:
    """The agent and the stand-in, as a peer: stored = addMessage received."""

    name = "simedge"
    configuration = (
        "simedge run, default settings; stored = addMessage received by the stand-in, so "
        "the SQLite commit and the upload are included"
    )

    def __init__(
        self,
        *,
        on_agent_started: Callable[[int], None] | None = None,
        log_level: str = "WARNING",
    ) -> None:
        # Called with the agent's PID right after the process is started (Python is
        # still importing; no port is open yet in practice): e.g. to move it into a
        # CPU-limited cgroup for a Pi-sized run.
        self.on_agent_started = on_agent_started
        self.log_level = log_level
        self._standin: StandIn | None = None
        self._agent: Process | None = None

    def missing(self) -> str | None:
        return None

    @property
    def standin(self) -> StandIn | None:
        """The stand-in once started (the burst anatomy reads its CPU)."""
        return self._standin

    async def start(self, folder: Path, ports: list[str]) -> list[Process]:
        self._standin = standin = await start_standin(folder)
        self._agent = agent = await start_agent(folder, standin, log_level=self.log_level)
        if self.on_agent_started is not None:
            self.on_agent_started(agent.pid)

        async def all_online() -> bool:
            return await standin.online_count() >= len(ports)

        await until(all_online, 180, f"{len(ports)} numbers online at the stand-in")
        return [agent]

    async def receipts(self) -> dict[str, float]:
        assert self._standin is not None
        return await self._standin.collect()

    async def stop(self) -> None:
        if self._agent is not None:
            await self._agent.stop()
        if self._standin is not None:
            await self._standin.stop()


@dataclass
class Pass:
    latencies: list[float]
    sent: int
    cpu_idle: float  # CPU s/min
    cpu_load: float


async def _wait_stored(peer: Peer, texts: list[str], seconds: float) -> dict[str, float]:
    deadline = time.monotonic() + seconds
    while True:
        stored = await peer.receipts()
        if all(text in stored for text in texts) or time.monotonic() > deadline:
            return stored
        await asyncio.sleep(0.2)


async def _pass(peer: Peer, idle: float, load: float) -> Pass:
    with tempfile.TemporaryDirectory(prefix="simedge-peer-") as directory:
        folder = Path(directory)
        hub, control = await start_hub(folder, MODEMS, SEED)
        try:
            processes = await peer.start(folder, await at_ports(control))
            try:
                warm = await inject_steadily(control, MODEMS, MODEMS, 1.0, "warm", 0)
                stored = await _wait_stored(peer, list(warm.texts.values()), WARM_UP)
                missing = [text for text in warm.texts.values() if text not in stored]
                if missing:
                    raise RuntimeError(f"{peer.name}: {len(missing)} warm-up SMS not stored")
                cpu, wall = tree_cpu(processes), time.monotonic()
                await asyncio.sleep(idle)
                cpu_idle = (tree_cpu(processes) - cpu) / (time.monotonic() - wall) * 60
                cpu, wall = tree_cpu(processes), time.monotonic()
                injection = await inject_steadily(
                    control, MODEMS, RATE, load, "load", warm.next_event
                )
                cpu_load = (tree_cpu(processes) - cpu) / (time.monotonic() - wall) * 60
                texts = list(injection.texts.values())
                stored = await _wait_stored(peer, texts, DRAIN)
                return Pass(
                    latencies_ms(injection.by_text(), stored), len(texts), cpu_idle, cpu_load
                )
            finally:
                await peer.stop()
        finally:
            await control.close()
            await hub.stop()


def _ratio(value: float, reference: float) -> str:
    if reference <= 0:
        return "n/a"
    return f"×{value / reference:,.1f}"


def _rows(
    peer: Peer, result: Pass, reference: Pass | None, idle: float, load: float
) -> list[Result]:
    load_note = (
        f"{MODEMS} SIM800 modems, {RATE:g} SMS/s for {load:g} s, "
        f"{len(result.latencies)}/{result.sent} stored within {DRAIN:g} s"
    )
    figures = dict(zip(("p50", "p99", "max"), percentiles(result.latencies), strict=True))
    base = (
        dict(zip(("p50", "p99", "max"), percentiles(reference.latencies), strict=True))
        if reference
        else {}
    )
    rows = []
    for label, value in figures.items():
        ratio = f"{_ratio(value, base[label])} simedge's; " if reference else ""
        note = ratio + load_note + (f"; {peer.configuration}" if label == "p50" else "")
        rows.append(Result(f"{peer.name}: injected -> stored, {label}", value, "ms", COMMAND, note))
    for label, value, window, attribute in (
        ("idle", result.cpu_idle, f"{idle:g} s idle window", "cpu_idle"),
        ("under load", result.cpu_load, f"{load:g} s at {RATE:g} SMS/s", "cpu_load"),
    ):
        ratio = f"{_ratio(value, getattr(reference, attribute))} simedge's; " if reference else ""
        rows.append(
            Result(
                f"{peer.name}: CPU {label}",
                value,
                "CPU s/min",
                COMMAND,
                f"{ratio}{window}, {MODEMS} modems, all its processes",
            )
        )
    return rows


def run() -> list[Result]:
    """Rows for bench/RESULTS.md: per receiver p50/p99/max and CPU, with ratios."""
    idle = float(os.environ.get("SIMEDGE_BENCH_PEER_IDLE_SECONDS", 20))
    load = float(os.environ.get("SIMEDGE_BENCH_PEER_LOAD_SECONDS", 30))
    peers: list[Peer] = [
        Simedge(),
        GammuSmsd(fastest=False),
        GammuSmsd(fastest=True),
        Smstools(fastest=False),
        Smstools(fastest=True),
        GsmModemLibrary(),
    ]
    results: list[Result] = []
    reference: Pass | None = None
    for peer in peers:
        reason = peer.missing()
        if reason is None:
            try:
                measured = asyncio.run(_pass(peer, idle, load))
            except RuntimeError as exc:  # first line only: a table cell
                reason = f"failed: {str(exc).splitlines()[0]}"
        if reason is not None:
            results.append(Result(f"{peer.name}: skipped", "-", "", COMMAND, reason))
            continue
        results.extend(_rows(peer, measured, reference, idle, load))
        if reference is None:
            reference = measured
    return results


if __name__ == "__main__":
    for result in run():
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
