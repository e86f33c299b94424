"""The webhook listener under hostile clients, over raw sockets on 127.0.0.1.

Every test ends by checking that the listener still answers a legitimate call: nothing a
client sends may crash or stall it. Deadlines are short in these tests (``Limits``), and
the tests wait on the server closing the socket, never on a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from agent.webhook import Limits
from tests.webhook import (
    ONLINE,
    PATH,
    TOKEN,
    Running,
    read_until_closed,
    running_webhook,
    status_of,
)

HEADER_TIMEOUT = 0.5
LIMITS = Limits(header_timeout=HEADER_TIMEOUT, busy_connections=64, max_connections=128)
HEAD = f"GET {PATH}?token={TOKEN} HTTP/1.1\r\nHost: site\r\n".encode()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async with running_webhook(LIMITS, body_timeout=HEADER_TIMEOUT / 2) as running:
        yield running


async def assert_still_answers(running: Running) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(running.webhook_url)
    assert response.status_code == 200
    assert response.json() == {"list": ONLINE}


async def exchange(running: Running, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await read_until_closed(reader)
    finally:
        writer.close()


# -- oversized ----------------------------------------------------------------------------


async def test_a_1_mb_header_line_is_refused_without_reading_it(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    writer.write(HEAD + b"X-Padding: " + b"a" * (1 << 20) + b"\r\n\r\n")
    # The server refuses after its 16 KiB header limit and closes: the rest of the
    # megabyte may not even be taken, so the write may fail; either way it must end.
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(5):
            await writer.drain()
    answer = await read_until_closed(reader)
    writer.close()
    assert status_of(answer) in (400, None)  # None: the RST overtook the 400
    assert running.view.calls == 0
    await assert_still_answers(running)


async def test_a_1_mb_url_is_refused(running: Running) -> None:
    answer = await exchange(running, b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n")
    assert status_of(answer) in (400, None)
    await assert_still_answers(running)


@pytest.mark.parametrize(
    "path", [pytest.param(f"{PATH}?token={TOKEN}", id="webhook"), pytest.param("/x", id="other")]
)
async def test_a_10_mb_body_declared_and_partly_sent_gets_413_and_close(
    running: Running, path: str
) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: site\r\nContent-Length: {10 << 20}\r\n\r\n"
    answer = await exchange(running, head.encode() + b"{" * 4096)
    assert status_of(answer) == 413
    assert b"connection: close" in answer.lower()
    assert running.view.calls == 0
    await assert_still_answers(running)


@pytest.mark.parametrize(
    ("length", "status"),
    [
        pytest.param(b"9" * 15, 413, id="a petabyte"),
        pytest.param(b"9" * 40, 400, id="40 digits"),  # h11 refuses it before the app
    ],
)
async def test_an_absurd_content_length_is_refused(
    running: Running, length: bytes, status: int
) -> None:
    head = HEAD + b"Content-Length: " + length + b"\r\n\r\n"
    assert status_of(await exchange(running, head)) == status
    assert running.view.calls == 0
    await assert_still_answers(running)


async def test_a_chunked_body_past_the_limit_gets_413(running: Running) -> None:
    chunk = b"%x\r\n%s\r\n" % (32 * 1024, b"z" * 32 * 1024)
    head = f"POST {PATH}?token={TOKEN} HTTP/1.1\r\nHost: site\r\n"
    data = head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3
    assert status_of(await exchange(running, data)) == 413
    await assert_still_answers(running)


async def test_a_small_body_is_read_and_the_connection_kept(running: Running) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        first = await client.post(running.webhook_url, content=b"x" * 60_000)
        second = await client.get(running.webhook_url)
    assert first.status_code == second.status_code == 200
    assert "connection" not in first.headers


# -- malformed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(bytes.fromhex("16030100a5010000a10303") + bytes(range(256)), id="tls hello"),
        pytest.param(bytes(range(256)) * 4 + b"\r\n\r\n", id="binary"),
        pytest.param(b"\r\n\r\n\r\n\r\n", id="blank lines"),
        pytest.param(b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", id="non-ascii path"),
        pytest.param(
            f"GET {PATH}?token=".encode() + b"\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n",
            id="non-ascii in query",
        ),
        pytest.param(HEAD + b"no colon here\r\n\r\n", id="header without colon"),
        pytest.param(HEAD + b"Content-Length: abc\r\n\r\n", id="length not a number"),
        pytest.param(HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", id="two lengths"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="no host"),
    ],
)
async def test_malformed_http_gets_400_and_close(running: Running, garbage: bytes) -> None:
    answer = await exchange(running, garbage)
    assert status_of(answer) == 400
    assert running.view.calls == 0
    await assert_still_answers(running)


async def test_a_query_that_is_not_utf8_is_just_a_wrong_token(running: Running) -> None:
    head = f"GET {PATH}?token=%ff%fe%c3%28&token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
    answer = await exchange(running, head.encode() + b"Connection: close\r\n\r\n")
    assert status_of(answer) == 404  # only the first token counts
    await assert_still_answers(running)


# -- slow clients -------------------------------------------------------------------------


async def test_a_connection_that_sends_nothing_is_cut_after_the_header_timeout(
    running: Running,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    started = time.monotonic()
    assert await read_until_closed(reader) == b""
    assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9
    writer.close()


async def test_a_slowloris_head_trickled_byte_by_byte_is_cut(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    head = HEAD + b"X-Slow: " + b"s" * 10_000

    cut = asyncio.Event()

    async def trickle() -> int:
        """One byte per 20 ms (every byte would reset a plain keep-alive timer) until the
        server cuts the connection: the wait between bytes ends early when it does."""
        sent = 0
        with contextlib.suppress(ConnectionError):
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.02):
                        await cut.wait()
                if cut.is_set():
                    break
        return sent

    trickler = asyncio.create_task(trickle())
    started = time.monotonic()
    await assert_still_answers(running)  # the loop is not stalled meanwhile
    assert await read_until_closed(reader, within=HEADER_TIMEOUT * 6) == b""
    cut_after = time.monotonic() - started
    cut.set()
    await trickler
    writer.close()
    assert HEADER_TIMEOUT * 0.9 <= cut_after < HEADER_TIMEOUT * 6
    await assert_still_answers(running)


async def test_bytes_trickled_after_an_answer_do_not_keep_the_connection(
    running: Running,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    writer.write(HEAD + b"\r\n")
    first = await reader.readuntil(b"\r\n\r\n")
    assert status_of(first) == 200
    writer.write(b"G")  # the next request's head starts, and never ends
    answer = await read_until_closed(reader, within=HEADER_TIMEOUT * 6)
    writer.close()
    assert b"HTTP/1.1" not in answer  # only the rest of the first answer, then the cut


async def test_a_body_that_stalls_gets_408(running: Running) -> None:
    head = f"POST {PATH}?token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    answer = await exchange(running, head.encode() + b"{")
    assert status_of(answer) == 408
    await assert_still_answers(running)


# -- many connections ---------------------------------------------------------------------


async def test_500_concurrent_requests_get_answers_or_refusals_and_then_it_serves(
    running: Running,
) -> None:
    async def one() -> int | None:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
        try:
            writer.write(HEAD + b"Connection: close\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return status_of(await read_until_closed(reader))
        finally:
            writer.close()

    async with asyncio.timeout(30):
        statuses = await asyncio.gather(*(one() for _ in range(500)))
    # 200 while few are open, 503 past busy_connections, reset (None) past max_connections.
    assert set(statuses) <= {200, 503, None}
    assert statuses.count(200) + statuses.count(503) >= 1
    await assert_still_answers(running)


async def test_500_idle_connections_are_bounded_then_cut() -> None:
    """Past ``max_connections`` a connection is reset on arrival; the rest are cut at the
    header deadline. The deadline is longer here so that opening 500 connections on a
    slow machine does not free a slot before the last one has arrived."""
    limits = Limits(header_timeout=2.0, busy_connections=64, max_connections=128)

    async def held_until_cut(port: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened = time.monotonic()
        try:
            assert await read_until_closed(reader, within=20) == b""
            return time.monotonic() - opened
        finally:
            writer.close()

    async with running_webhook(limits) as running:
        held = await asyncio.gather(*(held_until_cut(running.server.port) for _ in range(500)))
        reset_on_arrival = [seconds for seconds in held if seconds < limits.header_timeout / 2]
        assert len(reset_on_arrival) >= 500 - limits.max_connections
        assert running.server.connection_count == 0
        await assert_still_answers(running)
