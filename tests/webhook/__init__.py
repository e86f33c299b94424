"""Shared pieces of the webhook tests: a site view holding fixed data, a running listener on
127.0.0.1:0, raw-socket helpers, and the answer-latency measurement.

``measure_latency`` is a measurement, not a test; run it from the repository's root with::

    .venv/bin/python -c "import asyncio as a, tests.webhook as w; print(a.run(w.measure_latency()))"
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent.webhook import Limits, Metrics, WebhookApp, WebhookServer

TOKEN = "wh-7f3a9c1e5b2d4a60"
PATH = "/onlinesim/numbers"
ONLINE = [
    {
        "number": "+234112233445",
        "country_id": 234,
        "date_start": 1543417600,
        "operator": "62130",
        "port_id": "hub1-port3",
    },
    {"number": "+79161234567", "country_id": 7, "date_start": 1543417601, "port_id": "hub1-p4"},
]
HEALTH: dict[str, Any] = {
    "agent": "ok",
    "modems": {"ready": 2, "recovering": 1},
    "uplink": {"state": "ok", "code": None},
}


@dataclass
class FixedSiteView:
    """A SiteView over fixed data, standing in for the numbers-sync part of the agent."""

    online: list[dict[str, Any]] = field(default_factory=lambda: [dict(i) for i in ONLINE])
    state: dict[str, Any] = field(default_factory=lambda: dict(HEALTH))
    calls: int = 0

    def online_list(self) -> list[dict[str, Any]]:
        self.calls += 1
        return self.online

    def health(self) -> dict[str, Any]:
        return self.state


@dataclass
class Running:
    server: WebhookServer
    view: FixedSiteView
    metrics: Metrics

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base}{PATH}?token={TOKEN}"


@contextlib.asynccontextmanager
async def running_webhook(
    limits: Limits | None = None, *, token: str = TOKEN, body_timeout: float = 5.0
) -> AsyncIterator[Running]:
    view, metrics = FixedSiteView(), Metrics()
    app = WebhookApp(view, metrics, path=PATH, token=token, body_timeout=body_timeout)
    server = WebhookServer(app, limits)
    await server.start("127.0.0.1", 0)
    try:
        yield Running(server, view, metrics)
    finally:
        await server.stop()


async def read_until_closed(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (FIN or RST); raises
    TimeoutError if it has not closed it ``within`` seconds."""
    chunks: list[bytes] = []
    async with asyncio.timeout(within):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int | None:
    """The status code of a raw HTTP/1.1 answer, ``None`` when there is none."""
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


async def measure_latency(count: int = 1000) -> dict[str, float]:
    """Answer latency of the webhook call, in ms, over one keep-alive connection each:
    through httpx (what a client sees) and over a raw socket (mostly the server's part)."""
    async with running_webhook() as running:
        async with httpx.AsyncClient(base_url=running.base, timeout=5.0) as client:
            by_httpx = []
            for _ in range(count):
                started = time.perf_counter()
                response = await client.get(PATH, params={"token": TOKEN})
                by_httpx.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise AssertionError(f"answer {response.status_code}")
        reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
        request = f"GET {PATH}?token={TOKEN} HTTP/1.1\r\nHost: site\r\n\r\n".encode()
        by_socket = []
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            by_socket.append((time.perf_counter() - started) * 1000)
        writer.close()
    httpx_q, socket_q = (
        statistics.quantiles(by_httpx, n=100),
        statistics.quantiles(by_socket, n=100),
    )
    return {
        "count": count,
        "httpx_p50_ms": httpx_q[49],
        "httpx_p99_ms": httpx_q[98],
        "socket_p50_ms": socket_q[49],
        "socket_p99_ms": socket_q[98],
    }
