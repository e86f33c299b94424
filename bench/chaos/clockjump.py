"""The agent's wall clock jumps an hour back while 8 SMS on 4 SIMs wait for a link that is
down, and an hour forward again later: nothing may wait for the wall clock.

How the clock is moved: the agent runs under libfaketime (Debian's ``faketime`` package),
preloaded with ``DONT_FAKE_MONOTONIC=1`` and an offset read from a file, so only its
CLOCK_REALTIME (``time.time()``) moves; the monotonic clock every wait of the agent uses
stays true, as on a Pi whose clock NTP corrects. The agent has no hook for this: it is
the same binary and configuration as on a site. Skipped when libfaketime is missing.

Steps: 4 modems; OnlineSim down; 8 SMS (2 per modem) arrive; the clock goes an hour back;
the link returns: the backlog must go up within the link probe's monotonic back-off
(< 20 s), not an hour. Then the clock goes an hour forward (right again) and 8 more SMS
arrive with the link up: each must reach OnlineSim within 2 s, and every modem must still
be ready (health checks on the monotonic clock). Figures: drain time after the link came
back, worst latency after the forward jump.

Budget: ~20 s setup + ~15 s down + ~20 s + ~10 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.chaos import FAIL, PASS, SKIP, Judge, Verdict
from bench.chaos.world import World

NAME = "clockjump"
BUDGET = 150.0
MODEMS = 4
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
JUMP = 3600
DRAIN_WITHIN = 20.0  # the link probe's back-off after ~10 s down is at most 8-16 s
LATENCY_WITHIN = 2.0
CACHE = 1  # seconds libfaketime keeps the offset it read (FAKETIME_CACHE_DURATION)


async def _agent_skew(world: World) -> float:
    """The agent's wall clock minus ours, from the time its snapshot says it was taken."""
    snapshot = await world.until_snapshot(lambda _snapshot: True, 10.0)
    return float(snapshot["taken_at"]) - time.time()


def _have_libfaketime() -> bool:
    return LIBFAKETIME.exists()


async def run(folder: Path) -> Verdict:
    verdict = Judge(NAME)

    if not _have_libfaketime():
        return Verdict(NAME, SKIP, f"needs libfaketime ({LIBFAKETIME}; apt install faketime)")
    offset = folder / "clock-offset"
    offset.write_text("+0\n")
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_CACHE_DURATION": str(CACHE),
        "DONT_FAKE_MONOTONIC": "1",
    }
    async with World(folder, modems=MODEMS, profile="mixed", seed=41, agent_env=env) as world:
        if not await world.start_ready():
            return verdict(FAIL, "the modems did not all get ready")
        await world.standin_faults(down=True)
        backlog = [await world.inject(n % MODEMS) for n in range(2 * MODEMS)]
        await asyncio.sleep(8.0)  # probes fail, the link's back-off grows
        offset.write_text(f"-{JUMP}\n")
        await asyncio.sleep(CACHE + 1.0)  # the agent reads the new offset
        skew = await _agent_skew(world)
        if abs(skew + JUMP) > 60:
            return verdict(FAIL, f"the agent's clock is {skew:+.0f} s off, not -{JUMP}")
        await world.standin_faults(clear=True)
        back = time.time()
        tally = await world.until_delivered(DRAIN_WITHIN + 10.0)
        if tally.lost:
            return verdict(FAIL, f"an hour back: {tally.figures()} {DRAIN_WITHIN + 10:.0f} s on")
        drained = max(world.arrived_at[text] for text in backlog) - back

        offset.write_text("+0\n")  # NTP sets it right: an hour forward
        await asyncio.sleep(CACHE + 1.0)
        fresh = [await world.inject(n % MODEMS) for n in range(2 * MODEMS)]
        tally = await world.until_delivered(10.0)
        if tally.lost:
            return verdict(FAIL, f"an hour forward: {tally.figures()}")
        worst = max(world.arrived_at[text] - world.injected_at[text] for text in fresh)
        ready = await world.until_ready(MODEMS, 10.0)
        figures = (
            f"agent clock {skew:+.0f} s: backlog of {len(backlog)} drained {drained:.1f} s "
            f"after the link was back; clock +1 h: worst SMS {worst:.2f} s; "
            f"{ready}/{MODEMS} modems ready; "
            f"{tally.figures()}; order per SIM "
            f"{'kept' if not world.order_broken() else 'BROKEN'}"
        )
        if drained >= DRAIN_WITHIN or worst >= LATENCY_WITHIN or ready < MODEMS:
            return verdict(FAIL, figures)
        if world.order_broken() or not world.agent.alive:
            return verdict(FAIL, figures)
        return verdict(PASS, figures)
