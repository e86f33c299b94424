"""A control client that floods requests and never reads its answers.

The agent runs with 2 modems. A client connects to the control socket, writes 20,000
``snapshot`` requests and never reads a byte; later a second one writes 60,000. While
each flood is held, another client asks for a snapshot and an SMS is injected. Measured:
the agent's resident memory (sampled every 50 ms), how long the other client waited, how
long the SMS took to reach OnlineSim, and whether the flooder was disconnected.

Pass: the agent's RSS stays under 100 MB, the other client is answered and the SMS is
forwarded within 1 s, each flooder is cut off, and RSS after the floods is no higher than
during them (memory comes back, or was never taken).

Budget: two floods of up to CUT_WITHIN each, plus the world's start; typically ~60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

from agent.control.client import ControlClient
from agent.control.protocol import encode
from agent.control.server import SEND_TIMEOUT
from agent.errors import ControlError
from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import World

NAME = "control_flood"
BUDGET = 240.0
# The agent answers one snapshot at a time per client, 5 a second at most (shared): the
# flooder's unread answers pass the bound after some seconds, then SEND_TIMEOUT runs.
CUT_WITHIN = SEND_TIMEOUT + 80
FLOODS = (20_000, 60_000)
RSS_LIMIT = 100 * 1000 * 1000
WITHIN = 1.0  # seconds for the other client's answer and for the SMS
SAMPLE = 0.05


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


async def _sample_rss(world: World, peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], world.agent.rss_bytes())
        await asyncio.sleep(SAMPLE)  # a sampling period, not a wait for a state


async def _flood(world: World, requests: int) -> tuple[list[str], str]:
    """One flood: (problems, figures)."""
    loop = asyncio.get_running_loop()
    # A raw socket that never calls recv: a client that never reads, not even into a
    # buffer of its own.
    flooder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    flooder.setblocking(False)
    await loop.sock_connect(flooder, str(world.control_socket))
    started = loop.time()
    sending = asyncio.create_task(loop.sock_sendall(flooder, encode({"op": "snapshot"}) * requests))
    cut = asyncio.create_task(
        world.agent.wait_log(
            lambda line: "left its answers unread" in line, CUT_WITHIN, coming_only=True
        )
    )
    problems = []
    try:
        asked = loop.time()
        try:
            async with ControlClient(world.control_socket, timeout=10.0) as other:
                await other.request("snapshot")
        except ControlError as exc:
            problems.append(f"another client was refused: {exc}")
        answered = loop.time() - asked
        if answered > WITHIN:
            problems.append(f"another client waited {answered:.2f} s")
        forwarded = await world.forwarded_in(0)
        if forwarded is None or forwarded > WITHIN:
            problems.append(f"an SMS took {forwarded or 'over 10'} s to go out")
        was_cut = await cut
        cut_after = loop.time() - started
        if not was_cut:
            problems.append(f"the flooder of {requests:,} was not cut off")
    finally:
        cut.cancel()
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await sending
        flooder.close()
    sms = f"{forwarded:.2f} s" if forwarded is not None else "not forwarded"
    figures = (
        f"{requests:,} unread: other client {answered * 1000:.0f} ms, SMS {sms}, "
        f"cut off after {cut_after:.0f} s"
    )
    return problems, figures


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=2) as world:
        await world.start_agent()
        if await world.until_ready(2) < 2:
            return Verdict(NAME, FAIL, "modems not ready", time.monotonic() - started)
        idle_sms = await world.forwarded_in(1)
        before = world.agent.rss_bytes()
        peak = [before]
        sampler = asyncio.create_task(_sample_rss(world, peak))
        problems: list[str] = []
        figures = []
        try:
            for requests in FLOODS:
                more, said = await _flood(world, requests)
                problems += more
                figures.append(said)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        after = world.agent.rss_bytes()
    if peak[0] >= RSS_LIMIT:
        problems.append(f"agent RSS reached {_mb(peak[0])}")
    if after > peak[0]:
        problems.append(f"agent RSS grew after the floods, to {_mb(after)}")
    idle = f"{idle_sms:.2f} s" if idle_sms is not None else "not forwarded"
    detail = (
        f"agent RSS {_mb(before)} before, peak {_mb(peak[0])}, {_mb(after)} after; "
        + "; ".join(figures)
        + f" (SMS idle: {idle})"
    )
    outcome = FAIL if problems else PASS
    if problems:
        detail = "; ".join(problems) + " -- " + detail
    return Verdict(NAME, outcome, detail, time.monotonic() - started)
