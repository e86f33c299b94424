"""A whole site in the test's event loop: emulated modems on ptys, the OnlineSim stand-in
on loopback, and the real agent (store, fleet, uplink, webhook, control socket) between
them. Nothing of ours is replaced; only timings are shortened."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import config as config_module
from agent.emulate.modems import Hub
from agent.emulate.onlinesim import OnlineSimStandIn
from agent.modem.worker import Backoff, WorkerSettings
from agent.supervisor import Agent

KEY = "e2e-api-key-0123456789"
TOKEN = "e2e-webhook-token-0123456789"


def free_port() -> int:
    """A loopback TCP port nothing listens on now (for a webhook the test configures)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


FAST = WorkerSettings(
    command_timeout=1.0,
    health_interval=1.0,
    timeouts_before_reset=2,
    boot_settle=0.05,
    reset_wait=2.0,
    disk_full_retry=0.5,
    ussd_answer_within=3.0,
    failed_backoff=Backoff(initial=0.5, growth=2.0, cap=1.0),
)


@dataclass
class Site:
    folder: Path
    hub: Hub
    standin: OnlineSimStandIn
    agent: Agent
    config: config_module.Config

    @property
    def webhook_url(self) -> str:
        assert self.agent.webhook is not None
        return f"http://127.0.0.1:{self.agent.webhook.port}{self.config.webhook.path}"

    async def until(self, condition: Callable[[], bool], seconds: float = 20.0) -> None:
        """Wait until ``condition()`` holds, looking again whenever the stand-in or the
        agent changed something; fails after ``seconds``."""
        async with asyncio.timeout(seconds):
            while not condition():
                either = [
                    asyncio.create_task(self.standin.wait_until(lambda _state: condition())),
                    asyncio.create_task(self.agent.wait_until(condition)),
                ]
                try:
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in either:
                        task.cancel()

    async def ready_modems(self, count: int, seconds: float = 30.0) -> None:
        assert self.agent.fleet is not None
        fleet = self.agent.fleet
        await self.until(
            lambda: sum(1 for m in fleet.modems() if str(m.state) == "ready") >= count, seconds
        )


def site_config(folder: Path, standin_url: str, **sections: dict[str, Any]) -> config_module.Config:
    document: dict[str, Any] = {
        "onlinesim": {
            "base_url": standin_url,
            "api_key": KEY,
            "takeoff_sum": 0,
            "numbers_debounce": 0.3,
        },
        "site": {"data_dir": str(folder / "data")},
        "modems": {"ports": [str(folder / "modems" / "*")]},
        "webhook": {"listen": "127.0.0.1:1", "token": TOKEN},
        "control": {"socket": str(folder / "control.sock")},
    }
    for section, values in sections.items():
        document.setdefault(section, {}).update(values)
    config = config_module.from_mapping(document, environ={})
    if "listen" in sections.get("webhook", {}):
        return config  # a test that must know the port in advance chose one
    # Port 0 (any free port) is not a valid configured port; tests need it.
    return dataclasses.replace(config, webhook=dataclasses.replace(config.webhook, port=0))


StartSite = Callable[..., Awaitable[Site]]


class SimulatedClock:
    """A wall clock that runs with the real one from an offset the test moves: a month
    passes in one call, and everything waiting on the clock sees it at its next look."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def start_agent(
    config: config_module.Config,
    folder: Path,
    worker_settings: WorkerSettings = FAST,
    **agent_options: Any,
) -> tuple[Agent, asyncio.Event, asyncio.Task[None]]:
    """The real agent in this loop, on the emulated hub only, with short timings; returns
    once it started (or raises what stopped it). Set the event to stop it; await the task.
    ``agent_options``: the Agent's clock and upkeep_check, for simulated days."""
    agent = Agent(
        config,
        auto_discovery=False,
        by_path_dir=folder / "no-by-path",
        worker_settings=worker_settings,
        hotplug_interval=0.2,
        **agent_options,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(20):
        started_wait = asyncio.create_task(agent.started.wait())
        await asyncio.wait([started_wait, task], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped the agent
    return agent, stop, task


@pytest.fixture
async def start_site(tmp_path: Path) -> AsyncIterator[StartSite]:
    started: list[tuple[Site, asyncio.Event, asyncio.Task[None]]] = []

    async def start(
        count: int = 3,
        profile: str = "mixed",
        seed: int = 7,
        worker_settings: WorkerSettings = FAST,
        hub_options: dict[str, Any] | None = None,
        clock: SimulatedClock | None = None,
        prepare: Callable[[Hub], None] = lambda hub: None,
        **sections: dict[str, Any],
    ) -> Site:
        """``hub_options``: more keyword arguments of the emulated hub; ``clock``: the
        agent's and the modems' wall clock, moved by the test (days pass at once);
        ``prepare`` changes the emulated world before the agent starts."""
        hub_options = dict(hub_options or {})
        options: dict[str, Any] = {}
        if clock is not None:
            hub_options["wall_clock"] = clock.datetime
            options = {"clock": clock, "upkeep_check": 0.2}
        hub = Hub(
            tmp_path / "modems",
            count=count,
            profile=profile,
            seed=seed,
            noise_interval=0.5,
            **hub_options,
        )
        await hub.start()
        prepare(hub)
        standin = OnlineSimStandIn(key=KEY)
        url = await standin.start()
        config = site_config(tmp_path, f"{url}/api/resellers", **sections)
        agent, stop, task = await start_agent(config, tmp_path, worker_settings, **options)
        site = Site(tmp_path, hub, standin, agent, config)
        started.append((site, stop, task))
        return site

    yield start
    for site, stop, task in started:
        stop.set()
        async with asyncio.timeout(30):
            await task
        await site.standin.stop()
        await site.hub.stop()
