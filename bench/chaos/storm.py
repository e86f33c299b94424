"""Modem storms: hangs, reboots, unplugs and replugs, SIM swaps, full storage and garbage
on many modems at once while SMS arrive.

16 modems of mixed profiles, the agent running. Three rounds of 10 s; in each, a fault
hits most modems at once while 40 SMS arrive at random modems:

- hang (no answer at all) for 4 s, then cleared;
- garbage on the port for 5 s, then cleared;
- reboot (boot URCs, settings lost);
- unplugged for 3 s, then plugged back (new ptys, same slot);
- storage full of old read SMS (the agent must sweep them; new SMS queue at the network);
- SIM pulled for 3 s, then a new SIM inserted.

A SIM pulled takes what is on it (and what the network queued for it) away, as in the
field; that is not the agent losing SMS, so the modems that get a SIM swap in a round
receive nothing before their swap: swaps go to modems kept aside from injection until then.
After the last round every fault is cleared. Pass: every SMS delivered and all 16 modems
ready again.

Budget: 3 x 10 s of storm, at most 120 s for delivery and modems back; typically ~60 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import World

NAME = "storm"
BUDGET = 180.0
MODEMS = 16
ROUNDS = 3
ROUND_SECONDS = 10.0
SMS_PER_ROUND = 40
SWAPS_PER_ROUND = 2  # modems 10..15 are kept for swaps, two per round
RECOVER_WITHIN = 120.0


async def _timed_fault(world: World, modem: int, kind: str, until: str, seconds: float) -> None:
    await world.hub.fault(modem, kind)
    await asyncio.sleep(seconds)  # how long the fault lasts is the scenario, not a wait
    await world.hub.fault(modem, until)


async def _swap(world: World, modem: int, receiving: set[int]) -> None:
    await world.hub.fault(modem, "sim-out")
    await asyncio.sleep(3.0)
    await world.hub.fault(modem, "sim-in")
    receiving.add(modem)


async def _round(world: World, number: int, receiving: set[int]) -> list[str]:
    rng = world.rng
    swaps = [10 + SWAPS_PER_ROUND * number + k for k in range(SWAPS_PER_ROUND)]
    struck = sorted(receiving)
    rng.shuffle(struck)
    kinds = ("hang", "garbage", "reboot", "unplug", "storage-full")
    faults = []
    work = []
    for modem, kind in zip(struck, kinds * 2, strict=False):
        faults.append(f"{kind}@{modem}")
        if kind == "hang":
            work.append(_timed_fault(world, modem, "hang", "clear", 4.0))
        elif kind == "garbage":
            work.append(_timed_fault(world, modem, "garbage", "clear", 5.0))
        elif kind == "unplug":
            work.append(_timed_fault(world, modem, "unplug", "replug", 3.0))
        else:
            work.append(world.hub.fault(modem, kind))
    for modem in swaps:
        faults.append(f"sim-swap@{modem}")
        work.append(_swap(world, modem, receiving))
    await asyncio.gather(
        *work,
        world.inject_many(SMS_PER_ROUND, SMS_PER_ROUND / ROUND_SECONDS, lambda: sorted(receiving)),
    )
    return faults


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=MODEMS, profile="mixed", seed=12) as world:
        await world.start_agent()
        if (ready := await world.until_ready(MODEMS)) < MODEMS:
            return Verdict(NAME, FAIL, f"only {ready} of {MODEMS} modems got ready", 0.0)
        receiving = set(range(10))
        struck = 0
        for number in range(ROUNDS):
            struck += len(await _round(world, number, receiving))
        for modem in range(MODEMS):
            await world.hub.fault(modem, "clear")
        storm_end = time.monotonic()
        tally = await world.until_delivered(RECOVER_WITHIN)
        ready = await world.until_ready(
            MODEMS, max(5.0, RECOVER_WITHIN - (time.monotonic() - storm_end))
        )
        took = time.monotonic() - started
        figures = f"{tally.figures()}; {struck} faults; {ready}/{MODEMS} modems ready after"
        if tally.lost or ready < MODEMS or not world.agent.alive:
            why = figures
            if tally.lost:
                why += f"; missing: {tally.missing()}; {await world.whereabouts(tally.lost)}"
                why += f"; {await world.in_outbox(tally.lost)}"
            if not world.agent.alive:
                why += "; the agent died"
            return Verdict(NAME, FAIL, why, took)
        return Verdict(NAME, PASS, f"{figures} in {time.monotonic() - storm_end:.0f} s", took)
