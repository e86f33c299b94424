"""One client cannot take the webhook: a cap per source, and log lines per source.

Two sources on loopback: 127.0.0.2 is the hostile client, 127.0.0.1 is OnlineSim (Linux
routes all of 127.0.0.0/8 to lo, so a client socket can be bound to either).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import pytest

from agent.logs import LINES_PER_SOURCE
from agent.webhook import Limits
from agent.webhook.server import source_of
from tests.webhook import (
    ONLINE,
    PATH,
    TOKEN,
    Running,
    read_until_closed,
    running_webhook,
    status_of,
)

HOSTILE = "127.0.0.2"
CALL = f"GET {PATH}?token={TOKEN} HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n".encode()


async def onlinesim_call(running: Running) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5.0) as client:
        return await client.get(running.webhook_url)


async def connect_from(
    source: str, running: Running
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", running.server.port, local_addr=(source, 0))


async def test_500_idle_connections_from_one_source_leave_onlinesim_its_answer() -> None:
    # A header deadline longer than the test: the idle connections are held, not cut.
    limits = Limits(header_timeout=60.0)
    async with running_webhook(limits) as running:
        hostile = [await connect_from(HOSTILE, running) for _ in range(500)]
        try:
            response = await onlinesim_call(running)
            assert response.status_code == 200
            assert response.json() == {"list": ONLINE}

            # Of the 500, only those the server kept can still be answered.
            async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int | None:
                # A connection the server refused is already closed here (uvloop's
                # transports raise on a write after that, asyncio's drop it).
                with contextlib.suppress(ConnectionError):
                    if not writer.is_closing():
                        writer.write(CALL)
                        await writer.drain()
                return status_of(await read_until_closed(reader))

            statuses = await asyncio.gather(*(ask(r, w) for r, w in hostile))
            assert statuses.count(200) == limits.max_per_source
            assert statuses.count(None) == 500 - limits.max_per_source
        finally:
            for _, writer in hostile:
                writer.close()
        assert running.server.connection_count == 0  # every slot came back


async def test_a_reconnecting_slowloris_from_one_source_cannot_keep_onlinesim_out() -> None:
    # Fewer slots than attackers: without the cap per source they would hold them all.
    # The deadline is not what is tested here and the attackers share the test's event
    # loop with the server: long enough for OnlineSim's head to arrive on a loaded
    # machine, shorter than the attackers' dribbled heads (about 4 s).
    limits = Limits(header_timeout=2.0, busy_connections=24, max_connections=32)
    async with running_webhook(limits) as running:
        connects = 0

        async def slowloris() -> None:
            # Dribbles a head one byte at a time and reconnects as soon as it is cut.
            nonlocal connects
            while True:
                reader, writer = await connect_from(HOSTILE, running)
                connects += 1
                try:
                    for byte in CALL:
                        writer.write(bytes([byte]))
                        await writer.drain()
                        # Between bytes, wait for the server's cut (EOF), 50 ms at most:
                        # the attack's pace, and the reconnect as soon as it is cut.
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(0.05):
                                if not await reader.read(1):
                                    break
                except ConnectionError:
                    pass
                finally:
                    writer.close()

        attackers = [asyncio.create_task(slowloris()) for _ in range(100)]
        try:
            for _ in range(20):
                response = await onlinesim_call(running)
                assert response.status_code == 200
        finally:
            for attacker in attackers:
                attacker.cancel()
            await asyncio.gather(*attackers, return_exceptions=True)
        assert connects > 100  # the attack did keep reconnecting meanwhile


async def test_2000_malformed_requests_from_one_source_log_a_few_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_webhook() as running:
        for _ in range(2000):
            reader, writer = await connect_from(HOSTILE, running)
            writer.write(b"\x16\x03\x01 not http\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            assert status_of(await read_until_closed(reader)) in (400, None)
            writer.close()
        response = await onlinesim_call(running)
        assert response.status_code == 200
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) <= LINES_PER_SOURCE
    assert lines == [f"webhook: from {HOSTILE}: malformed HTTP request"] * len(lines)
    assert all(r.name == "simedge.webhook" for r in caplog.records)  # the server logs none itself


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same client, another address
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("", "unknown"),
    ],
)
def test_a_source_is_an_ipv4_address_or_an_ipv6_64(host: str, source: str) -> None:
    assert source_of(host) == source
