"""SMS that arrive while every modem waits for a USSD answer the network never gives.

The hub's network takes USSD_DELAY (60 s) over each USSD question, longer than the
agent's wait for an answer (``ussd_answer_within``, 20 s). The agent is configured with a
balance question for every SIM's network, so each modem asks at its SIM's first sight and
waits the whole 20 s. Meanwhile an SMS is injected on every modem every SMS_EVERY seconds,
until each modem's question has ended ("no answer in 20 s" in the agent's log). Only the
modems whose SIM stores its number take part: a SIM whose number must be asked by USSD has
no number while the network is silent, and OnlineSim takes no SMS for a number it does not
know (such SMS wait in the outbox, stored, as they should).

Measured: how long each SMS took to reach OnlineSim, split into those injected while their
modem's question was still waiting and the others. Before the worker read SMS during a USSD
wait (README's former known limit), those waited for the question's end: up to 20 s.

Pass: every SMS at OnlineSim, the slowest within 1 s, at least one SMS per modem injected
while its question waited, and every question ended as "no answer" (the network's silence
was real).

Budget: the world's start, the 20 s questions, the last SMS; ~60 s.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.usbpath import parse_by_path
from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import World, WorldError

NAME = "ussdwait"
BUDGET = 120.0
MODEMS = 4
USSD_DELAY = 60.0
ANSWER_WITHIN = 20.0  # the agent's default ussd_answer_within
SMS_EVERY = 2.0
WITHIN = 1.0
CODE = "*100#"
# "2026-12-03 07:09:31,823 WARNING simedge.modem.upkeep: 1.1.7: balance *100# of SIM ...:
# no answer in 20 s": the question's end, on the wall clock, and its modem's slot.
_ENDED = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ simedge\.modem\.upkeep: "
    r"(?P<slot>\S+): balance \S+ of SIM \S+: no answer in "
)


def _ended(line: str) -> tuple[str, float] | None:
    """(slot, wall time) of a question that ended without an answer, from a log line."""
    found = _ENDED.match(line)
    if found is None:
        return None
    at = datetime.strptime(found["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found["slot"], at


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=MODEMS, ussd_delay=USSD_DELAY) as world:
        networks = {str(modem["mcc_mnc"]) for modem in await world.modem_states()}
        with world.agent.config_path.open("a", encoding="utf-8") as config:
            for network in sorted(networks):
                config.write(f'\n[sims.balance."{network}"]\ncode = "{CODE}"\n')
        states = await world.modem_states()
        slots = [_agent_slot(modem) for modem in states]
        taking_part = [index for index, modem in enumerate(states) if modem["number_on_sim"]]
        if len(taking_part) < 2:
            return Verdict(NAME, FAIL, f"only {len(taking_part)} SIMs store their number")
        # Not every modem: one whose SIM's number is asked by USSD is set up 20 s later.
        await world.start_agent()
        if await world.until_ready(len(taking_part)) < len(taking_part):
            return Verdict(NAME, FAIL, "modems not ready", time.monotonic() - started)
        ended: dict[str, float] = {}
        texts: dict[str, tuple[int, float]] = {}  # text -> (modem, injected at)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_WITHIN + 30.0
        while any(slots[modem] not in ended for modem in taking_part) and loop.time() < deadline:
            for modem in taking_part:
                text = await world.inject(modem)
                texts[text] = (modem, world.injected_at[text])
            for line in world.agent.tail:
                if (question := _ended(line)) is not None:
                    ended.setdefault(question[0], question[1])
            await asyncio.sleep(SMS_EVERY)  # the pace of the SMS, not a wait for a state
        tally = await world.until_delivered(15.0)
    waiting, other = [], []
    for text, (modem, injected_at) in texts.items():
        arrived = world.arrived_at.get(text)
        latency = None if arrived is None else arrived - injected_at
        end = ended.get(slots[modem])
        (waiting if end is not None and injected_at < end else other).append(latency)
    problems = []
    if tally.lost:
        problems.append(f"{len(tally.lost)} lost: {tally.missing()}")
    unanswered = sum(slots[modem] in ended for modem in taking_part)
    if unanswered < len(taking_part):
        problems.append(f"only {unanswered} of {len(taking_part)} questions ended unanswered")
    if len(waiting) < len(taking_part):
        problems.append(f"only {len(waiting)} SMS injected while a question waited")
    delivered = [lat for lat in waiting + other if lat is not None]
    worst = max(delivered, default=0.0)
    worst_waiting = max((lat for lat in waiting if lat is not None), default=0.0)
    worst_other = max((lat for lat in other if lat is not None), default=0.0)
    if worst > WITHIN:
        problems.append(f"slowest SMS {worst:.2f} s, over {WITHIN:g} s")
    detail = (
        f"{len(taking_part)} modems (SIMs that store their number) each waiting "
        f"{ANSWER_WITHIN:g} s for a USSD answer that never came; "
        f"{len(waiting)} SMS injected meanwhile, slowest at OnlineSim {worst_waiting:.2f} s; "
        f"{len(other)} others, slowest {worst_other:.2f} s; "
        f"{tally.figures()}"
    )
    if problems:
        detail = "; ".join(problems) + " -- " + detail
    return Verdict(NAME, FAIL if problems else PASS, detail, time.monotonic() - started)


def _agent_slot(modem: dict[str, Any]) -> str:
    """The slot the agent's log names a hub modem by: its AT port's by-path name, read as
    the agent reads it (agent.usbpath)."""
    where = parse_by_path(Path(str(modem["ports"][0])).name)
    if where is None:
        raise WorldError(f"the hub's port {modem['ports'][0]} is not a by-path name")
    return where.slot
