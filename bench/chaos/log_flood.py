"""2,000 malformed requests at the webhook from one source: the journal stays quiet.

The agent runs with 1 modem. One source (127.0.0.2) sends 2,000 malformed HTTP requests,
8 connections at a time (its cap). Then a malformed request from another source
(127.0.0.3) is the marker: its log line comes after every line the flood caused, so
counting the agent's log lines up to it counts all of them. OnlineSim's call (from
127.0.0.1, through the stand-in) must still be answered.

Pass: fewer than 20 log lines for the 2,000 requests (one a request before), the
webhook call answered 200, and when the minute is over, one summary line says how many
requests there were.

Budget: a few seconds of requests, the minute until the summary, the world's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from agent.logs import SUMMARY_WINDOW
from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import World

NAME = "log_flood"
BUDGET = 150.0
REQUESTS = 2000
MAX_LINES = 20
FLOODER, MARKER = "127.0.0.2", "127.0.0.3"
PARALLEL = 8  # the per-source cap: more would only be reset on arrival
GARBAGE = b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n"  # e.g. TLS at a plain port


async def _malformed(world: World, source: str) -> None:
    reader, writer = await world.connect_webhook(source)
    try:
        writer.write(GARBAGE)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            async with asyncio.timeout(10):
                while await reader.read(65536):
                    pass  # the 400, then the close
    finally:
        writer.close()


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=1, webhook_calls=True) as world:
        await world.start_agent()
        await world.until_ready(1)
        first_line = world.agent.lines
        marked = asyncio.create_task(
            world.agent.wait_log(lambda line: f"from {MARKER}" in line, 30, coming_only=True)
        )
        flood_started = time.monotonic()

        async def share(count: int) -> None:
            for _ in range(count):
                await _malformed(world, FLOODER)

        await asyncio.gather(*(share(REQUESTS // PARALLEL) for _ in range(PARALLEL)))
        flood_seconds = time.monotonic() - flood_started
        await _malformed(world, MARKER)
        if not await marked:
            return Verdict(NAME, FAIL, "the marker request was not logged", 0.0)
        lines = world.agent.lines - first_line - 1
        flood_lines = [line for line in world.agent.tail if FLOODER in line]
        call = await world.call_webhook()
        # The minute ends with one line that says how many there were.
        summarised = await world.agent.wait_log(
            lambda line: f"malformed requests from {FLOODER} in the last minute" in line,
            SUMMARY_WINDOW + 15,
        )
        summary = next((line for line in world.agent.tail if "in the last minute" in line), "")
    problems = []
    if not summarised:
        problems.append("no summary line within a minute and a bit")
    if lines >= MAX_LINES:
        problems.append(f"{lines} log lines")
    if call["status"] != 200:
        problems.append(f"OnlineSim's call got {call['status'] or call['error']}")
    detail = (
        f"{REQUESTS:,} malformed requests in {flood_seconds:.1f} s gave {lines} log lines "
        f"({len(flood_lines)} naming {FLOODER}); OnlineSim's call {call['status']} "
        f"in {call['duration'] * 1000:.0f} ms; then: {summary.partition(': ')[2]!r}"
    )
    if problems:
        detail = "; ".join(problems) + " -- " + detail
    return Verdict(NAME, FAIL if problems else PASS, detail, time.monotonic() - started)
