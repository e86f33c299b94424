"""Hot-plug: how long a modem that comes back into a port takes to be in service again.

The real agent (default settings, as ``simedge run`` has them) on a hub of emulated modems,
in one process; a modem is unplugged, the agent sees it gone, it is plugged back, and the
time from the replug to the modem's READY state is taken. Goal (issue 5): within 5 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from agent import config as config_module
from agent.cli import run_on_event_loop
from agent.emulate.modems import Hub
from agent.emulate.onlinesim import OnlineSimStandIn
from agent.status import ModemState
from agent.supervisor import Agent
from bench import Result

COMMAND = "python -m bench hotplug_bench"
KEY = "bench-key-0123456789"
REPLUGS = 5


async def _measure(folder: Path, profile: str) -> list[float]:
    hub = Hub(folder / "modems", count=4, profile=profile, seed=11)
    standin = OnlineSimStandIn(key=KEY)
    await hub.start()
    url = await standin.start()
    config = config_module.from_mapping(
        {
            "onlinesim": {"base_url": f"{url}/api/resellers", "api_key": KEY, "takeoff_sum": 0},
            "site": {"data_dir": str(folder / "data")},
            "modems": {"ports": [f"{folder / 'modems'}/*"]},
            "webhook": {"listen": "127.0.0.1:1", "token": "bench-token-0123456789"},
            "control": {"socket": str(folder / "control.sock")},
        }
    )
    # Any free port for the webhook (0 is not a valid configured port).
    config = dataclasses.replace(config, webhook=dataclasses.replace(config.webhook, port=0))
    agent = Agent(config, auto_discovery=False, by_path_dir=folder / "none")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    times: list[float] = []
    try:
        await agent.started.wait()
        assert agent.fleet is not None
        fleet = agent.fleet

        def state(slot: str) -> ModemState | None:
            status = fleet.statuses.get(slot)
            return status.state if status else None

        async with asyncio.timeout(120):
            await agent.wait_until(
                lambda: sum(1 for m in fleet.modems() if m.state is ModemState.READY) == 4
            )
            for attempt in range(REPLUGS):
                index = attempt % 4
                slot = fleet.modems()[index].slot
                hub.fault(index, "unplug")
                await agent.wait_until(lambda slot=slot: state(slot) is ModemState.GONE)
                started = time.monotonic()
                hub.fault(index, "replug")
                await agent.wait_until(lambda slot=slot: state(slot) is ModemState.READY)
                times.append(time.monotonic() - started)
    finally:
        stop.set()
        await task
        await standin.stop()
        await hub.stop()
    return times


def run() -> list[Result]:
    results = []
    for profile in ("sim800", "ec25", "huawei"):
        with tempfile.TemporaryDirectory() as folder:
            times = run_on_event_loop(_measure(Path(folder), profile))
        results.append(
            Result(
                f"replug to in service, {profile}",
                max(times),
                "s (worst)",
                COMMAND,
                f"median {statistics.median(times):.2f} s over {len(times)} replugs; "
                "default settings; goal 5 s",
            )
        )
    return results


if __name__ == "__main__":
    for result in run():
        print(result)
