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
import contextlib
import json
import os
import socket
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import h11
import httpcore

from agent.cli import run_on_event_loop
from agent.config import OnlineSimConfig
from agent.uplink import NumberItem, OnlineSimClient, UplinkSettings
from agent.uplink.client import JSON_CONTENT_TYPE, USER_AGENT
from agent.uplink.network import AsyncioBackend
from bench import Result
from bench.site import KEY, start_standin

COMMAND = "python -m bench uplink_bench"
NUMBER = "+79161230000"
WARM_UP = 304  # a multiple of IN_FLIGHT
BLOCKS = 20
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


Call = Callable[[int], Awaitable[None]]


async def _measured(
    calls: int, rows: dict[str, tuple[int, Call]]
) -> dict[str, tuple[float, float]]:
    """Per row: (µs of this process's CPU per request, requests per second of wall time).

    Each row's ``(requests per call, call)`` is warmed up, then the rows take turns in
    BLOCKS blocks of ``calls / BLOCKS`` requests each, and a row's figure is that of its
    least disturbed block (the least CPU per request, the most requests per second), as
    ``timeit`` advises: on a shared machine the load drifts and only ever adds, and turns
    spread it over every row.
    """
    for per_call, call in rows.values():
        for n in range(WARM_UP // per_call):
            await call(n)
    blocks: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for block in range(BLOCKS):
        for name, (per_call, call) in rows.items():
            count = calls // BLOCKS // per_call
            first = block * count
            cpu, wall = time.process_time(), time.perf_counter()
            for n in range(first, first + count):
                await call(n)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            blocks[name].append((cpu / (count * per_call) * 1e6, count * per_call / wall))
    return {
        name: (
            min(cpu for cpu, _ in figures),
            max(rate for _, rate in figures),
        )
        for name, figures in blocks.items()
    }


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[OnlineSimClient]:
    """The client as the agent builds it, its number online at the stand-in."""
    settings = UplinkSettings.from_config(OnlineSimConfig(base_url=url, api_key=KEY))
    async with OnlineSimClient(settings) as client:
        await client.send_numbers_online(
            [NumberItem(number=NUMBER, country_id=7, date_start=1_764_000_000)]
        )
        yield client


def _client_calls(client: OnlineSimClient) -> dict[str, tuple[int, Call]]:
    async def one(n: int) -> None:
        payload = _payload(n)
        await client.add_message(
            number=NUMBER, sender=payload["from"], text=payload["message"], date=1764680000
        )

    async def eight(n: int) -> None:
        await asyncio.gather(*(one(n * IN_FLIGHT + k) for k in range(IN_FLIGHT)))

    return {"client, one at a time": (1, one), f"client, {IN_FLIGHT} in flight": (IN_FLIGHT, eight)}


def _check(status: int, body: bytes, layer: str) -> None:
    # A floor that fails its calls would measure the wrong path: require OnlineSim's yes.
    if status != 200 or json.loads(body).get("response") not in (1, "1"):
        raise RuntimeError(f"{layer}: addMessage answered HTTP {status}: {body[:200]!r}")


def _httpcore_call(pool: httpcore.AsyncConnectionPool, url: str) -> Call:
    host = urllib.parse.urlsplit(url).netloc.encode()
    address = httpcore.URL(url)

    async def call(n: int) -> None:
        content = json.dumps(_payload(n), ensure_ascii=False).encode()
        answer = await pool.request(
            "POST", address, headers=_headers(host, len(content))[1:], content=content
        )
        _check(answer.status, answer.content, "bare httpcore")

    return call


def _h11_call(url: str) -> Call:
    """One kept-alive connection, opened again when the stand-in closed it while other
    rows took their turn (it closes a connection idle for 5 s)."""
    target = urllib.parse.urlsplit(url)
    loop = asyncio.get_running_loop()
    link: list[tuple[socket.socket, h11.Connection]] = []

    async def connected() -> tuple[socket.socket, h11.Connection]:
        if link:
            sock, connection = link[0]
            if connection.their_state is h11.IDLE and not _closed(sock):
                return sock, connection
            sock.close()
            link.clear()
        sock = socket.create_connection((target.hostname, target.port))
        sock.setblocking(False)
        link.append((sock, h11.Connection(h11.CLIENT)))
        return link[0]

    async def call(n: int) -> None:
        sock, connection = await connected()
        content = json.dumps(_payload(n), ensure_ascii=False).encode()
        head = h11.Request(
            method="POST",
            target=target.path,
            headers=_headers(target.netloc.encode(), len(content)),
        )
        # h11 returns None only for events that write nothing; these three all write.
        events = (head, h11.Data(data=content), h11.EndOfMessage())
        wire = [connection.send(event) for event in events]
        await loop.sock_sendall(sock, b"".join(part for part in wire if part))
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

    return call


def _closed(sock: socket.socket) -> bool:
    """Whether the peer closed an idle connection (it is readable: an end of file)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False


async def _rows(folder: Path, calls: int) -> dict[str, tuple[float, float]]:
    standin = await start_standin(folder)
    try:
        url = f"{standin.url}/api/resellers"
        add = f"{url}/addMessage"
        pool = httpcore.AsyncConnectionPool(max_connections=1, network_backend=AsyncioBackend())
        async with _client(url) as client, pool:
            rows = _client_calls(client)
            rows["bare httpcore pool"] = (1, _httpcore_call(pool, add))
            rows["bare h11"] = (1, _h11_call(add))
            figures = await _measured(calls, rows)
        received = len((await standin.get("messages"))["messages"])
        sent = sum(
            (WARM_UP // per_call + calls // BLOCKS // per_call * BLOCKS) * per_call
            for per_call, _ in rows.values()
        )
        if received != sent:
            raise RuntimeError(f"the stand-in recorded {received} addMessage, {sent} were sent")
        return figures
    finally:
        await standin.stop()


def run() -> list[Result]:
    calls = int(os.environ.get("SIMEDGE_BENCH_UPLINK_CALLS", "5000"))
    with tempfile.TemporaryDirectory() as folder:
        rows = run_on_event_loop(_rows(Path(folder), calls))
    note = (
        f"best of {BLOCKS} blocks taking turns, {calls:,} calls in all after {WARM_UP} "
        "to warm up; stand-in in its own process, loopback"
    )
    results = []
    for name, (cpu, rate) in rows.items():
        results.append(Result(f"addMessage CPU, {name}", cpu, "µs per call", COMMAND, note))
        results.append(Result(f"addMessage rate, {name}", rate, "calls/s", COMMAND, note))
    return results


if __name__ == "__main__":
    for result in run():
        print(result)
