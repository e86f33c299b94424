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

from agent.cli.run import IO_THREADS
from agent.emulate.modems import Hub
from agent.emulate.onlinesim import OnlineSimStandIn
from tests.e2e.site import KEY, TOKEN
from tests.slowdown import process_limit

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_run_under_systemd_notify_then_sigterm(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "modems", count=2, profile="sim800", seed=3)
    standin = OnlineSimStandIn(key=KEY)
    await hub.start()
    url = await standin.start()
    port = free_port()
    config = tmp_path / "simedge.toml"
    config.write_text(
        f'[onlinesim]\nbase_url = "{url}/api/resellers"\napi_key = "{KEY}"\ntakeoff_sum = 0\n'
        f'numbers_debounce = 0.3\n[site]\ndata_dir = "data"\n'
        f'[modems]\nports = ["{tmp_path / "modems"}/*"]\nhealth_interval = 1\n'
        f'[webhook]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\n'
        '[control]\nsocket = "control.sock"\n'
    )
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
        await standin.stop()
        await hub.stop()
