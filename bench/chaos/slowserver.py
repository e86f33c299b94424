"""OnlineSim answers every call after the agent's timeout (7 s against 5 s) for 30 s
while 4 SMS arrive on 4 SIMs; then it is quick again.

A timed-out addMessage may have been accepted anyway: the API has no message id, so the
agent can only send it again (docs/uplink.md, "The delivery promise"). What it must not do
is multiply: while calls time out the link is down and only its one probe (plus one call
per fresh SMS) goes out. Figures: addMessage calls, how many the agent gave up on
(answered after the timeout), duplicates at OnlineSim. Pass: none lost, duplicates <=
timed-out calls.

Budget: ~20 s setup + 30 s slow + up to 60 s to deliver.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.chaos import FAIL, PASS, Judge, Verdict
from bench.chaos.world import World

NAME = "slowserver"
BUDGET = 120.0
MODEMS = 4
SLOW_FOR = 30.0
LATENCY = 7.0
TIMEOUT = 5.0  # the World's [onlinesim] timeout


async def run(folder: Path) -> Verdict:
    verdict = Judge(NAME)

    async with World(folder, modems=MODEMS, profile="mixed", seed=31) as world:
        if not await world.start_ready():
            return verdict(FAIL, "the modems did not all get ready")
        before = len(await world.add_message_calls())
        await world.standin_faults(latency=LATENCY)
        await asyncio.gather(
            *(world.inject(modem) for modem in range(MODEMS)), asyncio.sleep(SLOW_FOR)
        )
        await world.standin_faults(clear=True)
        tally = await world.until_delivered(60.0)
        calls = (await world.add_message_calls())[before:]
        timed_out = sum(1 for call in calls if (call.get("latency_added") or 0) >= TIMEOUT)
        figures = (
            f"{len(calls)} addMessage calls for {tally.injected} SMS, {timed_out} timed out; "
            f"{tally.figures()}"
        )
        if tally.lost:
            return verdict(FAIL, f"{figures}; missing: {tally.missing()}")
        if tally.duplicates > timed_out:
            return verdict(FAIL, f"{figures}: more duplicates than timeouts")
        return verdict(PASS, figures)
