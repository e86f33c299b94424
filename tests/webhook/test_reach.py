"""The public URL check (agent/webhook/reach.py) over real HTTP on 127.0.0.1: the real
webhook listener stands for the site seen through its tunnel, small raw servers for a
relay's error page and for somebody else's server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.status import PublicUrlState, PublicUrlStatus
from agent.webhook import Metrics
from agent.webhook.reach import MAX_ANSWER, PublicUrlCheck
from tests.webhook import running_webhook

INSTANCE = "0123456789abcdef"
WEBHOOK_URL = "https://relay.example/site-a/onlinesim/numbers?token=TOKEN"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(serve: Serve) -> AsyncIterator[str]:
    """A listener on 127.0.0.1 whose connections ``serve`` handles; yields its URL."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[str]:
    """A listener on 127.0.0.1 that sends ``answer`` to every connection and closes it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with serving(serve) as url:
        yield url


async def checked_once(url: str) -> PublicUrlStatus:
    """One check of ``url`` by a checker of its own (one miss is DOWN), closed after."""
    check = PublicUrlCheck(url, WEBHOOK_URL, INSTANCE, failures_before_down=1)
    try:
        return await check.check_once()
    finally:
        await check.aclose()


def http_answer(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + body


async def test_up_when_the_agent_reaches_its_own_healthz_then_down_after_two_misses() -> None:
    clock, changes = Clock(), []
    async with running_webhook() as running:
        running.view.state = {**running.view.state, "instance": INSTANCE}
        check = PublicUrlCheck(
            running.base, WEBHOOK_URL, INSTANCE, clock=clock, on_change=changes.append
        )
        try:
            assert check.status.state is PublicUrlState.UNKNOWN
            status = await check.check_once()
            assert status == PublicUrlStatus(
                url=WEBHOOK_URL, state=PublicUrlState.UP, since=1_000.0, checked_at=1_000.0
            )
            # An unwell agent (503) is still this agent, reached: the address works.
            running.view.state = {**running.view.state, "agent": "failing"}
            clock.now = 1_030.0
            status = await check.check_once()
            assert (status.state, status.since, status.checked_at) == (
                PublicUrlState.UP,
                1_000.0,
                1_030.0,
            )
            await running.server.stop()  # the tunnel is cut: nothing listens any more

            clock.now = 1_060.0
            status = await check.check_once()
            assert status.state is PublicUrlState.UP, "one miss is a lost packet, not an outage"
            assert status.problem is not None
            assert "ConnectError" in status.problem
            clock.now = 1_090.0
            status = await check.check_once()
            assert (status.state, status.since) == (PublicUrlState.DOWN, 1_090.0)
        finally:
            await check.aclose()
    assert [change.state for change in changes] == [PublicUrlState.UP, PublicUrlState.DOWN]


async def test_a_relays_error_page_or_another_agent_is_not_us() -> None:
    async with (
        raw_server(http_answer("502 Bad Gateway", b"", "text/html")) as relay_error,
        raw_server(http_answer("200 OK", b'{"agent": "ok", "instance": "other"}')) as other,
        raw_server(http_answer("200 OK", b"<html>router login</html>", "text/html")) as page,
    ):
        for url, words in (
            (relay_error, "HTTP 502"),
            (other, "another server answers there"),
            (page, "not JSON"),
        ):
            check = PublicUrlCheck(url, WEBHOOK_URL, INSTANCE, failures_before_down=1)
            try:
                status = await check.check_once()
            finally:
                await check.aclose()
            assert status.state is PublicUrlState.DOWN, url
            assert status.problem is not None
            assert words in status.problem


async def test_an_endless_answer_is_cut_at_the_bound() -> None:
    huge = b'{"instance": "' + b"x" * (4 * MAX_ANSWER) + b'"}'
    async with raw_server(http_answer("200 OK", huge)) as url:
        status = await checked_once(url)
    assert status.state is PublicUrlState.DOWN
    assert status.problem == f"HTTP 200: an answer over {MAX_ANSWER} bytes"


async def test_a_silent_address_times_out_and_the_problem_says_so() -> None:
    held: list[asyncio.StreamWriter] = []
    closed = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the checker gives up and closes its end
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with serving(never_answer) as url:
        check = PublicUrlCheck(url, WEBHOOK_URL, INSTANCE, timeout=0.2, failures_before_down=1)
        try:
            async with asyncio.timeout(5):
                status = await check.check_once()
                await check.aclose()
                await closed.wait()
        finally:
            await check.aclose()
    assert len(held) == 1
    assert status.state is PublicUrlState.DOWN
    assert status.problem is not None
    assert "Timeout" in status.problem


def test_metrics_export_the_state_only_for_a_configured_url() -> None:
    metrics = Metrics()
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert families["simedge_public_url_up"].samples == []

    metrics.set_public_url(WEBHOOK_URL, up=False, since=1_090.0)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    (up,) = families["simedge_public_url_up"].samples
    (since,) = families["simedge_public_url_since_timestamp_seconds"].samples
    assert (up.labels, up.value) == ({"url": WEBHOOK_URL}, 0.0)
    assert since.value == 1_090.0


async def test_a_trickling_answer_is_cut_at_the_timeout_too() -> None:
    """httpx's timeout is per read: an answer that trickles in a byte at a time (a broken
    proxy) would hold one check for hours, and the state with it. The whole check has
    the timeout."""
    stop = asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            while not stop.is_set():
                writer.write(b" ")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):  # the peer's pace: one byte per 50 ms
                        await stop.wait()
        writer.close()

    loop = asyncio.get_running_loop()
    async with serving(trickle) as url:
        check = PublicUrlCheck(url, WEBHOOK_URL, INSTANCE, timeout=0.5, failures_before_down=1)
        try:
            started = loop.time()
            async with asyncio.timeout(10):
                status = await check.check_once()
            took = loop.time() - started
        finally:
            stop.set()
            await check.aclose()
    assert took < 0.5 + 1.0, f"the check took {took:.1f} s"
    assert status.state is PublicUrlState.DOWN
    assert status.problem is not None
    assert "0.5 s" in status.problem


@pytest.mark.parametrize("url", ["https://ex\u00e4mple..com/site", "https://xn--a.example/site"])
async def test_an_address_httpx_cannot_request_is_a_problem_not_a_crash(url: str) -> None:
    """Some host names pass the configuration's check and are still refused by httpx (or
    its IDNA codec) before any request: the check says so; it must not raise, which
    would end the agent at every start."""
    status = await checked_once(url)
    assert status.state is PublicUrlState.DOWN
    assert status.problem is not None
    assert "URL" in status.problem or "codepoint" in status.problem.lower(), status.problem
