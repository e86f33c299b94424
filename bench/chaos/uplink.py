"""OnlineSim down, slow, resetting connections, answering 5xx for long stretches; then
back: everything delivered.

8 modems; the agent runs throughout. Four stretches of 12 s, each while 30 SMS arrive:
the API socket closed (``down``), every request answered 500/502/503 (``error_rate`` 1),
80 % of connections reset after the request was read (``reset_rate``), and every answer
3 s late with a third of them 5xx (``latency`` + ``error_rate``). After each stretch the
stand-in is healthy again and the scenario waits until that stretch's SMS are delivered:
the link's one probe (its back-off about 8-16 s after 12 s of failures) bounds how long
that takes when no new SMS comes to probe sooner (docs/uplink.md). Pass: none lost
(duplicates are shown; a reset can cut an answer that OnlineSim already acted on).

Budget: 4 x (12 s + at most 45 s to recover); typically ~90 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import World

NAME = "uplink"
BUDGET = 240.0
STRETCH = 12.0
SMS_PER_STRETCH = 30
RECOVER_WITHIN = 45.0
MODEMS = 8

STRETCHES: tuple[tuple[str, dict[str, object]], ...] = (
    ("down", {"down": True}),
    ("5xx", {"error_rate": 1.0}),
    ("resets", {"reset_rate": 0.8}),
    ("slow", {"latency": 3.0, "error_rate": 0.33}),
)


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=MODEMS, profile="mixed", seed=10) as world:
        await world.start_agent()
        if await world.until_ready(MODEMS) < MODEMS:
            return Verdict(NAME, FAIL, "the modems did not all get ready", 0.0)
        recoveries = []
        for name, faults in STRETCHES:
            await world.standin_faults(clear=True, **faults)
            await asyncio.gather(
                world.inject_many(SMS_PER_STRETCH, SMS_PER_STRETCH / STRETCH),
                asyncio.sleep(STRETCH),  # the stretch lasts this long whatever happens
            )
            await world.standin_faults(clear=True)
            back = time.monotonic()
            tally = await world.until_delivered(RECOVER_WITHIN)
            took = time.monotonic() - started
            if tally.lost:
                why = (
                    f"after {name}: {tally.figures()} {RECOVER_WITHIN:.0f} s after it ended;"
                    f" missing: {tally.missing()}"
                )
                return Verdict(NAME, FAIL, why, took)
            recoveries.append(f"{name} {time.monotonic() - back:.0f} s")
        if not world.agent.alive:
            return Verdict(NAME, FAIL, "the agent died", time.monotonic() - started)
        figures = f"{world.tally().figures()}; all delivered after {', '.join(recoveries)}"
        return Verdict(NAME, PASS, figures, time.monotonic() - started)
