"""`simedge run` as systemd runs it: notify READY, serve /healthz and /metrics, and shut
down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agent import config as config_module
from agent.cli import UVLOOP_INSTALLED
from agent.cli.run import IO_THREADS
from tests.e2e.site import KEY, TOKEN
from tests.e2e.test_one_agent import emulated_site, start_agent
from tests.slowdown import process_limit

ROOT = Path(__file__).resolve().parents[2]


def webhook_port(config: Path) -> int:
    return config_module.load(config, environ={}).webhook.port


async def test_run_under_systemd_notify_then_sigterm(tmp_path: Path) -> None:
    async with emulated_site(tmp_path, count=2, seed=3) as (_, standin, config):
        port = webhook_port(config)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify"))
        notify.setblocking(False)
        loop = asyncio.get_running_loop()
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "run", "--config", str(config),
            cwd=ROOT, stderr=asyncio.subprocess.PIPE,
            env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000",
                 "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        try:
            # The whole process's start (interpreter, imports, modems opened): 30 s natively;
            # scaled only under emulation (tests/slowdown.py). systemd itself allows 180 s
            # (TimeoutStartSec in deploy/systemd/simedge.service).
            async with asyncio.timeout(process_limit(30)):
                messages: list[bytes] = []
                while not any(m.startswith(b"READY=1") for m in messages):
                    messages.append(await loop.sock_recv(notify, 4096))
                while b"WATCHDOG=1" not in messages:
                    messages.append(await loop.sock_recv(notify, 4096))
                await standin.wait_until(lambda state: len(state.online) == 2)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                health = (await client.get("/healthz")).json()
                metrics = (await client.get("/metrics")).text
            assert health["agent"] == "ok"
            assert health["modems"] == {"ready": 2}
            families = {f.name: f for f in text_string_to_metric_families(metrics)}
            ready = [s.value for s in families["simedge_modems"].samples
                     if s.labels.get("state") == "ready"]  # fmt: skip
            assert ready == [2.0]
            # The main thread, the store's writer and at most IO_THREADS for blocking calls.
            assert len(os.listdir(f"/proc/{agent.pid}/task")) <= 2 + IO_THREADS

            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(process_limit(30)):
                _, stderr = await agent.communicate()
                while not any(m.startswith(b"STOPPING=1") for m in messages):
                    messages.append(await loop.sock_recv(notify, 4096))
            assert agent.returncode == 0, stderr.decode()
            assert b"agent stopped" in stderr
            assert KEY.encode() not in stderr
            assert TOKEN.encode() not in stderr
        finally:
            if agent.returncode is None:
                agent.kill()
                await agent.wait()
            notify.close()


async def test_sigterm_ends_the_agent_while_clients_hold_it_and_onlinesim_hangs(
    tmp_path: Path,
) -> None:
    """On a site, SIGTERM comes while the world misbehaves: a webhook client that sent many
    requests and reads no answer, one that stopped halfway through its head, and an
    OnlineSim that takes calls and answers none. The agent still exits 0, within its stop
    budget, instead of waiting on any of them (systemd would have to SIGKILL it)."""
    async with emulated_site(tmp_path, count=2, seed=4) as (hub, standin, config):
        port = webhook_port(config)
        agent = await start_agent(config)
        writers: list[asyncio.StreamWriter] = []
        try:
            async with asyncio.timeout(process_limit(30)):
                await standin.wait_until(lambda state: len(state.online) == 2)
            # The agent runs on the event loop the product chose (agent.cli.new_event_loop).
            maps = await asyncio.to_thread(Path(f"/proc/{agent.pid}/maps").read_text)
            assert ("uvloop" in maps) == UVLOOP_INSTALLED
            await standin.set_faults(latency=3600.0)  # every call from now on hangs
            hub.inject(0, "+79990001122", "a code that cannot be uploaded")
            _, never_reads = await asyncio.open_connection("127.0.0.1", port)
            never_reads.transport.pause_reading()
            never_reads.write(b"GET /healthz HTTP/1.1\r\nHost: site\r\n\r\n" * 2000)
            _, halfway = await asyncio.open_connection("127.0.0.1", port)
            halfway.write(b"GET /onlinesim/numbers HTTP/1.1\r\nHost: si")
            writers += [never_reads, halfway]
            await standin.wait_until(
                lambda state: any(
                    call.path.endswith("/addMessage") and call.answered_at is None
                    for call in state.requests
                )
            )

            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(process_limit(30)):
                _, stderr = await agent.communicate()
            assert agent.returncode == 0, stderr.decode()
            assert b"agent stopped" in stderr
        finally:
            for writer in writers:
                writer.transport.abort()
            if agent.returncode is None:
                agent.kill()
                await agent.wait()
