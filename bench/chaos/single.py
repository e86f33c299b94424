"""One agent per data folder and per serial port: a second ``simedge run`` on the same
configuration is refused, and the first does not notice.

4 SIM800 modems; the agent forwards 10 SMS. Then, while it runs:

- a second ``simedge run --config`` (same file) must exit 1 at once with one line naming
  the data folder and the running agent's PID, having opened no port;
- ``simedge scan --config`` (same file) must refuse the same way;
- ``simedge scan`` with no configuration (only the hub's glob) must open none of the
  agent's ports: each AT port is listed as in use by the agent's PID.

The first agent must come through unharmed: every modem still ready and 10 more SMS
forwarded. Last, the agent is SIGKILLed and started again: a lock left by a dead agent
must not stop the next one (the kernel drops an flock with its process).

Budget: ~20 s; 60 s at most.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import SIMEDGE, World

NAME = "single"
BUDGET = 60.0
MODEMS = 4
BEFORE, AFTER = 10, 10
REFUSED_WITHIN = 20.0


async def _command(*argv: str) -> tuple[int, str, str, float]:
    """Run ``simedge ARGV``: exit code, stdout, stderr and how long it took."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *SIMEDGE,
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(REFUSED_WITHIN):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(), time.monotonic() - started


async def run(folder: Path) -> Verdict:
    started = time.monotonic()

    def fail(why: str) -> Verdict:
        return Verdict(NAME, FAIL, why, time.monotonic() - started)

    async with World(folder, modems=MODEMS, profile="sim800", seed=31) as world:
        await world.start_agent()
        if await world.until_ready(MODEMS) < MODEMS:
            return fail("the modems did not all get ready")
        for n in range(BEFORE):
            await world.inject(n % MODEMS)
        if (tally := await world.until_delivered(30.0)).lost:
            return fail(f"before the second agent: {tally.figures()}")
        assert world.agent.process is not None
        pid = world.agent.process.pid
        config = str(world.agent.config_path)
        says_pid = f"{world.data_dir}: another simedge agent (PID {pid}) is already running"

        code, _, err, took = await _command("run", "--config", config)
        if code != 1 or says_pid not in err or err.count("\n") != 1:
            return fail(f"a second agent was not refused with one line: exit {code}, {err!r}")
        refused = f"second agent refused in {took:.1f} s (exit 1, names PID {pid})"

        code, out, err, _ = await _command("scan", "--config", config, "--no-auto")
        if code != 1 or says_pid not in err:
            return fail(f"scan beside the agent was not refused: exit {code}, {err!r}")

        code, out, err, _ = await _command(
            "scan", "--no-auto", "--port", f"{world.hub_dir}/*", "--json"
        )
        result = json.loads(out) if code == 0 else {}
        held = [p for p in result.get("ignored", ()) if f"(PID {pid})" in p["why"]]
        if code != 0 or result.get("modems") or len(held) != MODEMS:
            return fail(
                f"scan without a configuration opened the agent's ports: exit {code}, "
                f"{len(result.get('modems', ()))} modems probed, {len(held)} ports held"
            )

        if not world.agent.alive:
            return fail("the first agent died")
        ready = await world.until_ready(MODEMS, 10.0)
        for n in range(AFTER):
            await world.inject(n % MODEMS)
        tally = await world.until_delivered(30.0)
        if ready < MODEMS or tally.lost:
            return fail(f"the first agent was harmed: {ready}/{MODEMS} ready, {tally.figures()}")
        unharmed = (
            f"first agent unharmed: {ready}/{MODEMS} ready, {tally.received}/{tally.injected} "
            f"SMS forwarded, {tally.duplicates} duplicates"
        )

        await world.agent.kill()
        restart = time.monotonic()
        await world.start_agent()
        restarted = time.monotonic() - restart
        await world.inject(0)
        if (tally := await world.until_delivered(30.0)).lost:
            return fail(f"after SIGKILL and restart: {tally.figures()}")
        return Verdict(
            NAME,
            PASS,
            f"{refused}; scan refused; scan without config: {len(held)}/{MODEMS} AT ports "
            f"in use by the agent, none opened; {unharmed}; after SIGKILL the next agent "
            f"started in {restarted:.1f} s (no stale lock)",
            time.monotonic() - started,
        )
