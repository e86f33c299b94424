"""A catastrophic block rule cannot freeze the agent (issue 14, item 1).

Two modems; the configuration holds the rule of the report, text ``^(a+)+$``, and one more
is added at run time over the control socket, text ``^(a|aa)+$``, which backtracks
exponentially in the regex package too. Then, five rounds: forty ``a`` and a ``b`` arrive
on modem 0 and, right behind, a fresh SMS on modem 1, while the control socket
(``snapshot``) and ``/healthz`` are asked and timed. Finally SIGTERM.

Pass: modem 1's SMS reaches the OnlineSim stand-in within 1 s every round; the hostile SMS
is forwarded (a rule that runs out of time counts as no match); the timeout is reported
once (one log line, one event) for five SMS; the control socket and ``/healthz`` answer
within 1 s throughout; the agent exits within 5 s of SIGTERM.

Budget: ~30 s (start, ready, five rounds of at most a few seconds, stop).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from agent.control.client import ControlClient
from agent.errors import ControlError
from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import World

NAME = "blockrule"
BUDGET = 90.0
ROUNDS = 5
# Forty a and a b, as in the report; one more a each round, so no two PDUs are alike
# (the agent takes an identical PDU for a copy it stored already).
HOSTILE = ["a" * (40 + n) + "b" for n in range(ROUNDS)]
CONFIGURED_RULE = r"^(a+)+$"
ADDED_RULE = r"^(a|aa)+$"
DELIVERED_WITHIN = 1.0  # seconds for the other modem's SMS to reach the stand-in
ANSWER_WITHIN = 1.0  # seconds for the control socket and /healthz
EXIT_WITHIN = 5.0  # seconds from SIGTERM to exit
POLL = 0.05  # the stand-in process offers no event stream: its message list is polled


async def _standin_texts(world: World) -> list[str]:
    answer = await world.http.get(f"{world.control_url}/_standin/messages")
    answer.raise_for_status()
    return [message["text"] for message in answer.json()["messages"]]


async def _arrival(world: World, text: str, seconds: float) -> float | None:
    """Seconds until ``text`` is at the stand-in, or None when it is not within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if text in await _standin_texts(world):
            return time.monotonic() - started
        await asyncio.sleep(POLL)
    return None


async def _probe(world: World, control: ControlClient, stop: asyncio.Event) -> dict[str, float]:
    """Ask the control socket and /healthz in turn until ``stop``; the slowest of each
    (infinite when one did not answer at all)."""
    slowest = {"control": 0.0, "healthz": 0.0}
    health_url = f"http://127.0.0.1:{world.webhook_port}/healthz"
    while not stop.is_set():
        for what, ask in (
            ("control", lambda: control.request("snapshot")),
            ("healthz", lambda: world.http.get(health_url)),
        ):
            started = time.monotonic()
            try:
                await ask()
                took = time.monotonic() - started
            except (ControlError, httpx.HTTPError):
                took = float("inf")
            slowest[what] = max(slowest[what], took)
        await asyncio.sleep(POLL)
    return slowest


def _timeout_events(snapshot: dict[str, Any]) -> int:
    return sum(
        1
        for event in snapshot.get("events", ())
        if event.get("kind") == "block_rule" and "took longer" in event.get("text", "")
    )


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=2, profile="sim800", seed=14) as world:
        with world.agent.config_path.open("a", encoding="utf-8") as config:
            config.write(f'\n[[store.block]]\nname = "report"\ntext = "{CONFIGURED_RULE}"\n')
        await world.start_agent()
        if await world.until_ready(2) < 2:
            return Verdict(NAME, FAIL, "the modems did not both get ready", 0.0)
        async with ControlClient(world.control_socket, timeout=5.0) as control:
            await control.request("add_block_rule", name="stuck", text=ADDED_RULE)
            stop = asyncio.Event()
            probing = asyncio.create_task(_probe(world, control, stop))
            latencies: list[float | None] = []
            try:
                for hostile in HOSTILE:
                    await world.hub.inject(0, "+79161234567", hostile)
                    other = await world.inject(1)
                    latencies.append(await _arrival(world, other, DELIVERED_WITHIN))
            finally:
                stop.set()
                slowest = await probing
            for hostile in HOSTILE:  # the rule ran out of time: no match, forwarded
                await _arrival(world, hostile, 5.0)
            at_standin = set(await _standin_texts(world))
            hostile_forwarded = sum(1 for hostile in HOSTILE if hostile in at_standin)
            events = _timeout_events(await control.request("snapshot"))
        said = sum(1 for line in world.agent.tail if "block rule 'stuck' took longer" in line)

        assert world.agent.process is not None
        world.agent.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        try:
            async with asyncio.timeout(EXIT_WITHIN):
                await world.agent.process.wait()
            exit_after: float | None = time.monotonic() - stopping
        except TimeoutError:
            exit_after = None

    took = time.monotonic() - started
    arrived = [latency for latency in latencies if latency is not None]
    figures = (
        f"other modem's SMS at OnlineSim {len(arrived)}/{ROUNDS} within"
        f" {DELIVERED_WITHIN:.0f} s (slowest {max(arrived, default=0):.2f} s);"
        f" hostile SMS forwarded {hostile_forwarded}/{ROUNDS};"
        f" timeout reported {said} log line(s), {events} event(s);"
        f" control slowest {slowest['control']:.2f} s, /healthz slowest"
        f" {slowest['healthz']:.2f} s; SIGTERM exit "
        + (f"{exit_after:.2f} s" if exit_after is not None else f"not within {EXIT_WITHIN:.0f} s")
    )
    passed = (
        len(arrived) == ROUNDS
        and hostile_forwarded == ROUNDS
        and said == 1
        and events == 1
        and max(slowest.values()) < ANSWER_WITHIN
        and exit_after is not None
    )
    return Verdict(NAME, PASS if passed else FAIL, figures, took)
