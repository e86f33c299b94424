"""One source takes all the webhook connections it can: OnlineSim's call still gets in.

The agent runs with 2 modems (so the list is not empty). The hostile source, 127.0.0.2,
first opens 500 connections and sends a request on each: only those the agent kept can
be answered, which counts what one source can hold. Then it opens 500 again and holds
them without a byte, while 50 slowloris clients from the same source trickle request
heads a byte every 0.2 s and reconnect whenever they are cut. Meanwhile the stand-in
(OnlineSim, calling from 127.0.0.1) calls the agent's webhook 10 times.

Pass: all 10 calls answered 200 with the numbers, and at most ``max_per_source`` of the
500 kept.

Budget: 10 calls half a second apart plus the world's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from agent.webhook.server import Limits
from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import World

NAME = "webhook_hog"
BUDGET = 90.0
HELD = 500
SLOWLORIS = 50
CALLS = 10
HOSTILE = "127.0.0.2"


async def _slowloris(world: World, head: bytes, connects: list[int]) -> None:
    while True:
        try:
            _, writer = await world.connect_webhook(HOSTILE)
        except OSError:
            continue
        connects[0] += 1
        try:
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)  # the attack's pace
        except ConnectionError:
            pass
        finally:
            writer.close()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _hold(world: World, count: int) -> list[Connection]:
    held = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            held.append(await world.connect_webhook(HOSTILE))
    return held


async def _answered(connection: Connection, head: bytes) -> bool:
    """Whether a held connection can still get an answer (the agent kept it)."""
    reader, writer = connection
    try:
        writer.write(head + b"Connection: close\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            return (await reader.read(12)).startswith(b"HTTP/1.1 200")
    except (ConnectionError, TimeoutError):
        return False
    finally:
        writer.close()


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=2, webhook_calls=True) as world:
        await world.start_agent()
        await world.until_ready(2)
        path = world.webhook_url.removeprefix(f"http://127.0.0.1:{world.webhook_port}")
        head = f"GET {path} HTTP/1.1\r\nHost: site\r\n".encode()
        # First, how many of 500 the agent keeps: only those can be answered.
        probe = await _hold(world, HELD)
        kept = sum(await asyncio.gather(*(_answered(c, head) for c in probe)))
        # Then the siege: 500 held again, slowloris on top, and OnlineSim's calls.
        held = await _hold(world, HELD)
        connects = [0]
        attackers = [
            asyncio.create_task(_slowloris(world, head, connects)) for _ in range(SLOWLORIS)
        ]
        calls = []
        try:
            for _ in range(CALLS):
                calls.append(await world.call_webhook())
                await asyncio.sleep(0.5)  # OnlineSim's calls come apart, not in a burst
        finally:
            for attacker in attackers:
                attacker.cancel()
            await asyncio.gather(*attackers, return_exceptions=True)
            for _, writer in held:
                writer.close()
    answered = [call for call in calls if call["status"] == 200 and call["numbers"]]
    problems = []
    if len(answered) < CALLS:
        failed = [call["status"] or call["error"] for call in calls if call not in answered]
        problems.append(f"{CALLS - len(answered)} of OnlineSim's calls failed: {failed[:3]}")
    if kept > Limits.max_per_source:
        problems.append(f"the source kept {kept} connections")
    slowest = max(call["duration"] for call in calls)
    detail = (
        f"of {HELD} connections from {HOSTILE}, {kept} kept by the agent; "
        f"then {HELD} more ({HELD - len(held)} reset as they opened) and {connects[0]:,} "
        f"slowloris connects: {len(answered)}/{CALLS} OnlineSim calls answered 200 "
        f"(slowest {slowest * 1000:.0f} ms)"
    )
    if problems:
        detail = "; ".join(problems) + " -- " + detail
    return Verdict(NAME, FAIL if problems else PASS, detail, time.monotonic() - started)
