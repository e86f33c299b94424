"""One agent per data folder (issue 14, item 3), with real `simedge run` processes: a
second agent on the same folder is refused with the first one's PID and exit 1, the first
goes on forwarding SMS, and a SIGKILLed agent leaves no lock behind."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from agent.emulate.modems import Hub
from agent.emulate.onlinesim import OnlineSimStandIn
from tests.e2e.site import KEY, TOKEN, free_port

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, standin_url: str) -> Path:
    config = tmp_path / "simedge.toml"
    config.write_text(
        f'[onlinesim]\nbase_url = "{standin_url}/api/resellers"\napi_key = "{KEY}"\n'
        f'takeoff_sum = 0\nnumbers_debounce = 0.3\n[site]\ndata_dir = "data"\n'
        f'[modems]\nports = ["{tmp_path / "modems"}/*"]\nhealth_interval = 1\n'
        f'[webhook]\nlisten = "127.0.0.1:{free_port()}"\ntoken = "{TOKEN}"\n'
        '[control]\nsocket = "control.sock"\n'
    )
    return config


async def start_agent(config: Path, umask: int = -1) -> asyncio.subprocess.Process:
    """`simedge run` (started with ``umask`` when given), once it logged "agent started"."""
    # preexec_fn, not umask=: uvloop's subprocesses take no umask argument.
    set_umask = None if umask < 0 else functools.partial(os.umask, umask)
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "run", "--config", str(config),
        cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        preexec_fn=set_umask,
    )  # fmt: skip
    assert agent.stderr is not None
    async with asyncio.timeout(30):
        while b"agent started" not in (line := await agent.stderr.readline()):
            assert line, "the agent exited before it started"
    return agent


@asynccontextmanager
async def emulated_site(
    tmp_path: Path, count: int, seed: int
) -> AsyncIterator[tuple[Hub, OnlineSimStandIn, Path]]:
    """SIM800 modems on ptys and the OnlineSim stand-in, with a configuration file for
    `simedge run` between them: (hub, stand-in, configuration)."""
    hub = Hub(tmp_path / "modems", count=count, profile="sim800", seed=seed)
    standin = OnlineSimStandIn(key=KEY)
    await hub.start()
    try:
        yield hub, standin, write_config(tmp_path, await standin.start())
    finally:
        await standin.stop()
        await hub.stop()


async def stop_agent(agent: asyncio.subprocess.Process) -> None:
    if agent.returncode is None:
        agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await agent.wait()


async def test_second_agent_refused_first_unharmed_and_sigkill_leaves_no_lock(
    tmp_path: Path,
) -> None:
    async with emulated_site(tmp_path, count=2, seed=5) as (hub, standin, config):
        data_dir = tmp_path / "data"
        agents: list[asyncio.subprocess.Process] = []
        try:
            first = await start_agent(config)
            agents.append(first)
            async with asyncio.timeout(30):
                await standin.wait_until(lambda state: len(state.online) == 2)

            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "run", "--config", str(config),
                cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(30):
                _, stderr = await second.communicate()
            message = stderr.decode()
            assert second.returncode == 1, message
            assert (
                f"{data_dir}: another simedge agent (PID {first.pid}) is already running" in message
            )
            assert message.count("\n") == 1, message  # one clear line, no traceback

            # The first agent did not notice: its modems answer it, an SMS goes through.
            hub.inject(1, "+79161234567", "after the second agent")
            async with asyncio.timeout(20):
                await standin.wait_until(
                    lambda state: any(m.text == "after the second agent" for m in state.messages)
                )
            assert first.returncode is None

            # SIGKILL: no shutdown code runs; the kernel drops the lock with the process.
            os.kill(first.pid, signal.SIGKILL)
            await first.wait()
            assert (data_dir / "simedge.lock").read_text() == f"{first.pid}\n"  # left, unlocked
            third = await start_agent(config)
            agents.append(third)
            assert (data_dir / "simedge.lock").read_text() == f"{third.pid}\n"
            hub.inject(0, "+79161234567", "after the kill")
            async with asyncio.timeout(20):
                await standin.wait_until(
                    lambda state: any(m.text == "after the kill" for m in state.messages)
                )
        finally:
            for agent in agents:
                await stop_agent(agent)
