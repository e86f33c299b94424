"""CPU of one addMessage call in the calling process, layer by layer.

The production :class:`OnlineSimClient`, built as the agent builds it (``UplinkSettings.
from_config`` of an ``[onlinesim]`` table: 4 connections), sends addMessage calls to the
stand-in, which runs in a process of its own on loopback (OnlineSim is another machine, so
its CPU is not ours). The figure is this process's CPU (``time.process_time``: user +
system, every thread) over the timed calls, divided by the calls, after a warm-up that
opens the connections. Rows, from the whole client down to its floor:

- ``client, one at a time``: ``add_message`` awaited in a loop;
- ``client, 8 in flight``: eight callers at once, as the pump's default
  ``max_in_flight`` sends, spread over the client's connections (lanes);
- ``bare httpcore pool``: the same request (URL, headers, JSON body) through an
  ``httpcore.AsyncConnectionPool`` on our asyncio network backend, the body read and
  ``json.loads``-ed, nothing else: what httpx's layer, the lanes, the bound and the error
  mapping add is the difference to the first row;
- ``bare h11``: the same request written with ``h11.Connection`` on a socket of the event
  loop (``loop.sock_sendall`` / ``sock_recv``): HTTP framing and the event loop alone,
  httpcore's cost is the difference to the row above.

Run alone with ``python -m bench uplink_bench`` or ``python -m bench.uplink_bench``;
``SIMEDGE_BENCH_UPLINK_CALLS=N`` sets the timed calls per row (default 5000).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path

import h11
import httpcore

from agent.config import OnlineSimConfig
from agent.uplink import NumberItem, OnlineSimClient, UplinkSettings
from agent.uplink.client import JSON_CONTENT_TYPE, USER_AGENT
from agent.uplink.network import AsyncioBackend
from bench import Result
from bench.site import KEY, start_standin

COMMAND = "python -m bench uplink_bench"
NUMBER = "+79161230000"
WARM_UP = 300
IN_FLIGHT = 8
#: One h11 read: OnlineSim's answers and the stand-in's are a few hundred bytes.
_READ_SIZE = 64 * 1024


def _payload(n: int) -> dict[str, str]:
    # The pump's addMessage body (agent.uplink.client.OnlineSimClient.add_message).
    return {"from": "VKcom", "message": f"code {n:06d}", "date": "1764680000", "number": NUMBER}


def _headers(host: bytes, length: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"Host", host),
        (b"User-Agent", USER_AGENT.encode()),
        (b"Accept", b"application/json"),
        (b"Authorization", f"Bearer {KEY}".encode()),
        (b"Content-Type", JSON_CONTENT_TYPE.encode()),
        (b"Content-Length", str(length).encode()),
    ]


async def _measured(calls: int, call: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """(µs of this process's CPU per call, calls per second of wall time), after a warm-up."""
    for n in range(WARM_UP):
        await call(n)
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(calls):
        await call(n)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / calls * 1e6, calls / wall


async def _client_rows(url: str, calls: int) -> list[tuple[str, float, float]]:
    settings = UplinkSettings.from_config(OnlineSimConfig(base_url=url, api_key=KEY))
    async with OnlineSimClient(settings) as client:
        await client.send_numbers_online(
            [NumberItem(number=NUMBER, country_id=7, date_start=1_764_000_000)]
        )

        async def one(n: int) -> None:
            payload = _payload(n)
            await client.add_message(
                number=NUMBER, sender=payload["from"], text=payload["message"], date=1764680000
            )

        async def eight(n: int) -> None:
            await asyncio.gather(*(one(n * IN_FLIGHT + k) for k in range(IN_FLIGHT)))

        alone = await _measured(calls, one)
        cpu, rate = await _measured(calls // IN_FLIGHT, eight)
        if client.network.connections > settings.max_connections:
            raise RuntimeError(
                f"the client opened {client.network.connections} connections, "
                f"more than its {settings.max_connections}"
            )
    return [
        ("client, one at a time", *alone),
        (f"client, {IN_FLIGHT} in flight", cpu / IN_FLIGHT, rate * IN_FLIGHT),
    ]


def _check(status: int, body: bytes, layer: str) -> None:
    # A floor that fails its calls would measure the wrong path: require OnlineSim's yes.
    if status != 200 or json.loads(body).get("response") not in (1, "1"):
        raise RuntimeError(f"{layer}: addMessage answered HTTP {status}: {body[:200]!r}")


async def _httpcore_row(url: str, calls: int) -> tuple[str, float, float]:
    target = urllib.parse.urlsplit(url)
    host = target.netloc.encode()
    address = httpcore.URL(url)
    async with httpcore.AsyncConnectionPool(
        max_connections=1, network_backend=AsyncioBackend()
    ) as pool:

        async def call(n: int) -> None:
            content = json.dumps(_payload(n), ensure_ascii=False).encode()
            answer = await pool.request(
                "POST", address, headers=_headers(host, len(content))[1:], content=content
            )
            _check(answer.status, answer.content, "bare httpcore")

        return ("bare httpcore pool", *await _measured(calls, call))


async def _h11_row(url: str, calls: int) -> tuple[str, float, float]:
    target = urllib.parse.urlsplit(url)
    loop = asyncio.get_running_loop()
    sock = socket.create_connection((target.hostname, target.port))
    sock.setblocking(False)
    connection = h11.Connection(h11.CLIENT)

    async def call(n: int) -> None:
        content = json.dumps(_payload(n), ensure_ascii=False).encode()
        head = h11.Request(
            method="POST",
            target=target.path,
            headers=_headers(target.netloc.encode(), len(content)),
        )
        await loop.sock_sendall(
            sock,
            connection.send(head) + connection.send(h11.Data(data=content))  # type: ignore[operator]
            + connection.send(h11.EndOfMessage()),  # fmt: skip
        )
        status, body = 0, bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await loop.sock_recv(sock, _READ_SIZE)
                if not data:
                    raise RuntimeError("bare h11: the stand-in closed the connection")
                connection.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        _check(status, bytes(body), "bare h11")
        connection.start_next_cycle()

    try:
        return ("bare h11", *await _measured(calls, call))
    finally:
        sock.close()


async def _rows(folder: Path, calls: int) -> list[tuple[str, float, float]]:
    standin = await start_standin(folder)
    try:
        url = f"{standin.url}/api/resellers"
        rows = await _client_rows(url, calls)
        rows.append(await _httpcore_row(f"{url}/addMessage", calls))
        rows.append(await _h11_row(f"{url}/addMessage", calls))
        received = len((await standin.get("messages"))["messages"])
        # the rows' warm-ups and timed calls: the client's two, httpcore's and h11's
        sent = 3 * (calls + WARM_UP) + (calls // IN_FLIGHT + WARM_UP) * IN_FLIGHT
        if received < sent:
            raise RuntimeError(f"the stand-in recorded {received} addMessage, {sent} were sent")
        return rows
    finally:
        await standin.stop()


def run() -> list[Result]:
    calls = int(os.environ.get("SIMEDGE_BENCH_UPLINK_CALLS", "5000"))
    with tempfile.TemporaryDirectory() as folder:
        rows = asyncio.run(_rows(Path(folder), calls))
    note = f"{calls:,} calls after {WARM_UP} to warm up; stand-in in its own process, loopback"
    results = []
    for name, cpu, rate in rows:
        results.append(Result(f"addMessage CPU, {name}", cpu, "µs per call", COMMAND, note))
        results.append(Result(f"addMessage rate, {name}", rate, "calls/s", COMMAND, note))
    return results


if __name__ == "__main__":
    for result in run():
        print(result)
