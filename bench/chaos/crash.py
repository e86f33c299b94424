"""SIGKILL at random moments during heavy receive and upload (issue 6).

16 modems, 1,000 SMS injected at 50 a second while the agent is killed with SIGKILL at a
random moment after each start (0.2 to 2.5 s after it says "agent started": during modem
setup, sweeps, reads, commits, uploads) and started again with the same data folder, 14
times; the last kills land while the backlog is still going up. Then the agent runs until
every SMS is at the stand-in. Pass: none lost, duplicates at most one per kill (a kill
between OnlineSim's answer and the commit that marks the message sent resends it).

Budget: about 30 s of injection and kills plus at most 120 s to drain; typically ~60 s.
:func:`crash` is also the smaller run of ``make test`` (tests/e2e/test_crash.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import Tally, World

NAME = "crash"
BUDGET = 180.0


@dataclass(frozen=True)
class CrashOutcome:
    tally: Tally
    kills: int
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.tally.lost and self.tally.duplicates <= self.kills

    def verdict(self, whereabouts: str = "") -> Verdict:
        figures = f"{self.tally.figures()} after {self.kills} SIGKILLs"
        if self.passed:
            return Verdict(NAME, PASS, figures, self.seconds)
        why = figures
        if self.tally.lost:
            why += f"; missing: {self.tally.missing()}; {whereabouts}"
        if self.tally.duplicates > self.kills:
            why += f"; more duplicates than kills ({self.tally.duplicates} > {self.kills})"
        return Verdict(NAME, FAIL, why, self.seconds)


async def crash(
    world: World,
    *,
    sms: int,
    rate: float,
    kills: int,
    kill_after: tuple[float, float] = (0.2, 2.5),
    drain_seconds: float = 120.0,
) -> CrashOutcome:
    """Inject ``sms`` at ``rate`` per second while the agent is killed ``kills`` times, each
    at a random moment ``kill_after`` seconds after it said it started; then start it once
    more and wait until everything is delivered (or ``drain_seconds`` passed)."""
    started = time.monotonic()
    await world.start_agent()
    injecting = asyncio.create_task(world.inject_many(sms, rate))
    try:
        for _ in range(kills):
            # A deliberate random moment, not a wait for a condition: the kill must not
            # line up with anything the agent does.
            await asyncio.sleep(world.rng.uniform(*kill_after))
            await world.agent.kill()
            await world.start_agent()
        await injecting
    finally:
        injecting.cancel()
    tally = await world.until_delivered(drain_seconds)
    return CrashOutcome(tally, world.agent.kills, time.monotonic() - started)


async def run(folder: Path) -> Verdict:
    async with World(folder, modems=16, profile="mixed", seed=6) as world:
        outcome = await crash(world, sms=1000, rate=50.0, kills=14)
        if not world.agent.alive:
            return Verdict(NAME, FAIL, "the agent died by itself", outcome.seconds)
        lost = outcome.tally.lost
        return outcome.verdict(await world.in_outbox(lost) if lost else "")
