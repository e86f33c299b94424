"""The agent at rest: CPU per minute and resident memory with 64 and with 128 modems.

``simedge run`` with an operator's configuration (health checks every 30 s, numbers
heartbeat every 240 s) over emulated SIM800 modems in their own process (see
:mod:`bench.site`); once every number is online and start-up has settled, the agent's own
CPU (``/proc/PID/stat``, user + system) is read over a window of wall time, then its RSS.
The emulator's and the stand-in's CPU are not counted. The dashboard's RSS is measured by
``bench.tui_bench``. Window length: ``SIMEDGE_BENCH_IDLE_SECONDS`` (default 60).

    python -m bench idle_bench
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bench import Result
from bench.site import SimedgeSite, cpu_per_minute, rss_mib, simedge_site

COUNTS = (64, 128)
SETTLE = 10.0  # seconds after the last number went online: first health round, first sync
COMMAND = "python -m bench idle_bench"


async def at_rest(site: SimedgeSite, seconds: float) -> tuple[float, float]:
    """The agent's CPU s/min over ``seconds`` once start-up has settled, then its RSS."""
    await asyncio.sleep(SETTLE)
    per_minute = await cpu_per_minute(site.agent.pid, seconds)
    return per_minute, rss_mib(site.agent.pid)


def window(modems: int, seconds: float) -> str:
    return f"{modems} idle SIM800 modems, {seconds:g} s window after {SETTLE:g} s settling"


async def _measure(modems: int, seconds: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="simedge-idle-") as directory:
        async with simedge_site(Path(directory), modems, seed=5) as site:
            return await at_rest(site, seconds)


def run() -> list[Result]:
    """Rows for bench/RESULTS.md: CPU s/min (and % of a core) and RSS per modem count."""
    seconds = float(os.environ.get("SIMEDGE_BENCH_IDLE_SECONDS", 60))
    results = []
    for modems in COUNTS:
        per_minute, rss = asyncio.run(_measure(modems, seconds))
        measured = window(modems, seconds)
        goal_cpu = "; goal < 1% of a core" if modems == 64 else ""
        goal_rss = "; goal < 60" if modems == 64 else ""
        results.append(
            Result(
                f"agent CPU idle, {modems} modems",
                per_minute,
                "CPU s/min",
                COMMAND,
                f"{measured}; = {per_minute / 60 * 100:.2f}% of one core{goal_cpu}",
            )
        )
        results.append(
            Result(f"agent RSS idle, {modems} modems", rss, "MiB", COMMAND, measured + goal_rss)
        )
    return results


if __name__ == "__main__":
    for result in run():
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
