"""OnlineSim unreachable for 150 s while 24 SMS arrive on 8 SIMs; then back. The link's
probe has backed off for minutes by then: a fresh SMS must still reach OnlineSim under
1 s after the link is back, and the whole backlog under 2 s (docs/uplink.md).

8 modems; the stand-in's API port is closed (``down``) for ``DOWN_FOR`` seconds; the 24
SMS (3 per modem) arrive during the first 60 s of it, so the probe's back-off has grown
(1, 2, 4 ... 64 s) when the link returns. Right after the port accepts again, one fresh
SMS is injected on modem 0 (behind that SIM's backlog). Figures: time from the link back
to the fresh SMS at OnlineSim and to the last SMS of the backlog; order per SIM; lost;
duplicates. Pass: fresh < 1 s, backlog < 2 s, order kept, none lost.

``outage10`` is the same with 10 minutes down (separately selectable: it is long).
Budget: setup ~40 s + the outage + 15 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.chaos import FAIL, PASS, Judge, Verdict
from bench.chaos.world import World

NAME = "outage"
DOWN_FOR = 150.0
BUDGET = DOWN_FOR + 90.0
MODEMS = 8
BACKLOG = 24
ARRIVE_WITHIN = 60.0
FRESH_WITHIN = 1.0
DRAIN_WITHIN = 2.0


async def run(folder: Path) -> Verdict:
    return await outage(folder, NAME, DOWN_FOR)


async def outage(folder: Path, name: str, down_for: float) -> Verdict:
    verdict = Judge(name)

    async with World(folder, modems=MODEMS, profile="mixed", seed=13) as world:
        if not await world.start_ready():
            return verdict(FAIL, "the modems did not all get ready")
        await world.standin_faults(down=True)
        down_at = time.monotonic()
        backlog = []
        for n in range(BACKLOG):  # round robin: 3 per SIM, in order
            backlog.append(await world.inject(n % MODEMS))
            await asyncio.sleep(ARRIVE_WITHIN / BACKLOG)
        await asyncio.sleep(max(0.0, down_for - (time.monotonic() - down_at)))
        await world.standin_faults(clear=True)  # returns once the port accepts again
        back = time.time()
        fresh = await world.inject(0)
        tally = await world.until_delivered(30.0)
        if tally.lost:
            return verdict(FAIL, f"{tally.figures()} 30 s after the link was back")
        fresh_after = world.arrived_at[fresh] - back
        drained_after = max(world.arrived_at[text] for text in backlog) - back
        broken = world.order_broken()
        figures = (
            f"down {down_for:.0f} s with {BACKLOG} SMS on {MODEMS} SIMs: fresh SMS at OnlineSim "
            f"{fresh_after:.2f} s after the link was back, backlog drained {drained_after:.2f} s "
            f"after; {tally.figures()}; order per SIM {'kept' if not broken else 'BROKEN'}"
        )
        if not world.agent.alive:
            return verdict(FAIL, "the agent died; " + figures)
        if broken:
            return verdict(FAIL, f"{figures} (modems {broken})")
        if fresh_after >= FRESH_WITHIN or drained_after >= DRAIN_WITHIN:
            return verdict(FAIL, figures)
        return verdict(PASS, figures)
