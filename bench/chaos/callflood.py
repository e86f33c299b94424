"""A SIM flooded with calls while SMS keep arriving on it.

The agent runs with 2 modems. For FLOOD seconds modem 0 is called again and again, each
call placed as soon as the one before it was rejected (a new call that comes within a
second of a rejection is taken for the old one and rejected at its next ring, 3 s later,
as on a real network where a call takes seconds to set up). Every 5 s an SMS is injected
on the flooded modem. Measured: how many calls were rejected and how many were left to
ring until the caller gave up, how long each SMS took to reach OnlineSim, the agent's
resident memory (sampled every 50 ms) and how many calls the store kept.

Pass: every call rejected (none given up), every SMS at OnlineSim within 1 s, agent RSS
under 100 MB and no higher after the flood than during it, and the calls kept within the
bound of 20 a minute per SIM (agent/modem/calls.py).

Budget: FLOOD plus the world's start; ~90 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

from agent.errors import ControlError
from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import World

NAME = "callflood"
BUDGET = 180.0
FLOOD = 60.0
SMS_EVERY = 5.0
WITHIN = 1.0
RSS_LIMIT = 100 * 1000 * 1000
RECORDS_PER_MINUTE = 20
SAMPLE = 0.05


async def _sample_rss(world: World, peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], world.agent.rss_bytes())
        await asyncio.sleep(SAMPLE)  # a sampling period, not a wait for a state


async def _call_ended(
    world: World, call_id: str, since: int, seconds: float
) -> tuple[str | None, int]:
    """How the call ended ("call-rejected", "call-given up"), from the hub's event log
    read from ``since`` on, and where the next read starts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        events, since = await world.hub.events(since)
        for event in events:
            if event.get("call_id") == call_id and event["kind"] != "call-ringing":
                return str(event["kind"]), since
        await asyncio.sleep(0.02)  # the hub has no event stream; the end is timed
    return None, since


async def _flood(world: World, until: float, outcome: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    number = 0
    _, since = await world.hub.events(0)
    while loop.time() < until:
        number += 1
        try:
            call_id = await world.hub.call(0, f"+7903{number:07d}", give_up_after=30.0)
        except ControlError:
            outcome["refused"] = outcome.get("refused", 0) + 1
            continue
        ended, since = await _call_ended(world, call_id, since, 35.0)
        outcome[ended or "still ringing"] = outcome.get(ended or "still ringing", 0) + 1


def _calls_kept(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM incoming_call").fetchone()[0])


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=2, profile="ec25") as world:
        if not await world.start_ready():
            return Verdict(NAME, FAIL, "modems not ready", time.monotonic() - started)
        before = world.agent.rss_bytes()
        peak = [before]
        sampler = asyncio.create_task(_sample_rss(world, peak))
        loop = asyncio.get_running_loop()
        flood_started = loop.time()
        outcome: dict[str, int] = {}
        flood = asyncio.create_task(_flood(world, flood_started + FLOOD, outcome))
        latencies: list[float | None] = []
        try:
            while loop.time() < flood_started + FLOOD:
                latencies.append(await world.forwarded_in(0))
                await asyncio.sleep(SMS_EVERY)  # the pace of the SMS, not a wait for a state
            await flood
        finally:
            flood.cancel()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        flood_seconds = loop.time() - flood_started
        after = world.agent.rss_bytes()
        kept = _calls_kept(world.data_dir / "simedge.db")
    problems = []
    rejected = outcome.get("call-rejected", 0)
    unanswered = sum(count for kind, count in outcome.items() if kind != "call-rejected")
    if unanswered or not rejected:
        problems.append(f"calls not rejected: {outcome}")
    slow = [lat for lat in latencies if lat is None or lat > WITHIN]
    if slow:
        problems.append(f"{len(slow)} of {len(latencies)} SMS over {WITHIN:g} s")
    allowed = RECORDS_PER_MINUTE * (int(flood_seconds // 60) + 1)
    if kept > allowed:
        problems.append(f"{kept} calls kept, over the bound of {allowed}")
    if peak[0] >= RSS_LIMIT:
        problems.append(f"agent RSS reached {peak[0] / 1e6:.0f} MB")
    if after > peak[0]:
        problems.append(f"agent RSS grew after the flood, to {after / 1e6:.0f} MB")
    worst = max((lat for lat in latencies if lat is not None), default=0.0)
    detail = (
        f"{rejected} calls in {flood_seconds:.0f} s, all rejected ({kept} kept, bound "
        f"{allowed}); {len(latencies)} SMS on the flooded modem, slowest {worst:.2f} s; "
        f"agent RSS {before / 1e6:.0f} MB before, peak {peak[0] / 1e6:.0f} MB, "
        f"{after / 1e6:.0f} MB after"
    )
    if problems:
        detail = "; ".join(problems) + " -- " + detail
    return Verdict(NAME, FAIL if problems else PASS, detail, time.monotonic() - started)
