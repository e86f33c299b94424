"""The uplink's httpx transport on asyncio (agent.uplink.network), against real servers on
loopback: plain HTTP, TLS, keep-alive, a server that closes or resets idle connections,
one that never answers, one that pushes more than is read, a proxy, and a port nobody
listens on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpcore
import httpx
import pytest
import trustme

from agent.emulate.onlinesim import OnlineSimStandIn
from agent.errors import ConfigError
from agent.uplink import NumberItem, OnlineSimClient, UplinkSettings
from agent.uplink.client import environment_proxy
from agent.uplink.network import (
    KEEPALIVE_EXPIRY,
    MAX_ANSWER_HEAD,
    READ_BUFFER_LIMIT,
    WRITE_COALESCE_LIMIT,
    AsyncioBackend,
    UplinkTransport,
)

KEY = "sk-network-0123456789"
ANSWER = b'{"response": 1}'


@asynccontextmanager
async def http_server(
    *,
    close_after_answer: bool = False,
    reset_after_answer: bool = False,
    answer: bool = True,
    tls: ssl.SSLContext | None = None,
    arrived: asyncio.Event | None = None,
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A small HTTP/1.1 peer: answers each request with ANSWER (keeping the connection
    unless ``close_after_answer`` or ``reset_after_answer``), or never answers. Yields its
    URL and the requests; sets ``arrived`` on each request."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                requests.append(head + await reader.readexactly(length))
                if arrived is not None:
                    arrived.set()
                if not answer:
                    await reader.read()  # until the client gives up
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
                )
                await writer.drain()
                if reset_after_answer:
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                if close_after_answer or reset_after_answer:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://localhost:{port}", requests
    finally:
        server.close()
        await server.wait_closed()


def transport(
    backend: AsyncioBackend, context: ssl.SSLContext | None = None, proxy: str | None = None
) -> UplinkTransport:
    return UplinkTransport(
        ssl_context=context or httpx.create_ssl_context(),
        max_connections=1,
        backend=backend,
        proxy=proxy,
    )


async def post(lane: UplinkTransport, url: str, **extensions: object) -> httpx.Response:
    request = httpx.Request("POST", f"{url}/api/addMessage", content=b"{}", extensions=extensions)
    response = await lane.handle_async_request(request)
    await response.aread()
    return response


async def test_the_client_goes_through_the_asyncio_backend_and_keeps_its_connection() -> None:
    standin = OnlineSimStandIn(key=KEY)
    await standin.start("127.0.0.1", 0)
    client = OnlineSimClient(
        UplinkSettings(base_url=f"{standin.url}/api/resellers", api_key=KEY, max_connections=1)
    )
    try:
        await client.send_numbers_online(
            [NumberItem(number="+79161230001", country_id=7, date_start=1)]
        )
        for n in range(5):
            await client.add_message(number="+79161230001", sender="VK", text=f"{n}", date=1)
        assert client.network.connections == 1  # six requests, one kept-alive connection
        assert [m.text for m in standin.state.messages] == ["0", "1", "2", "3", "4"]
    finally:
        await client.aclose()
        await standin.stop()


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    backend = AsyncioBackend()
    lane = transport(backend)
    async with http_server(close_after_answer=True) as (url, requests):
        first = await post(lane, url)
        # Wait until the idle pooled connection has seen the server's close.
        assert await first.extensions["network_stream"].read(1, timeout=5) == b""
        second = await post(lane, url)
    await lane.aclose()
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.content == ANSWER
    assert len(requests) == 2
    assert backend.connections == 2


async def test_a_keep_alive_close_racing_a_request_fails_it_once_never_sends_it_twice() -> None:
    # The server's idle close crossing our next request: it read the request and dropped
    # it, unanswered. The call fails as the link's fault (the pump retries it later);
    # the transport never re-sends it by itself, so an addMessage OnlineSim may have taken
    # is never taken twice behind the pump's back.
    taken: list[bytes] = []
    served: list[asyncio.Task[None] | None] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(asyncio.current_task())
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            for answered in (True, False):
                head = await reader.readuntil(b"\r\n\r\n")
                taken.append(head + await reader.readexactly(2))  # b"{}"
                if answered:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
                    )
                    await writer.drain()
        writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    backend = AsyncioBackend()
    lane = transport(backend)
    first = await post(lane, url)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await post(lane, url)  # on the kept-alive connection, dropped unanswered
    third = await post(lane, url)  # a new connection
    await lane.aclose()
    server.close()
    await server.wait_closed()
    async with asyncio.timeout(5):  # each ends on our close: none left to the next test
        await asyncio.gather(*(task for task in served if task is not None))
    assert (first.status_code, third.status_code) == (200, 200)
    assert len(taken) == 3  # one each: the dropped request was not sent again
    assert backend.connections == 2


async def test_tls_with_the_site_trusting_the_servers_authority() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    backend = AsyncioBackend()
    lane = transport(backend, client_context)
    async with http_server(tls=server_context) as (url, requests):
        answer = await post(lane, url)
        stranger = transport(AsyncioBackend())  # certifi's roots only: refused
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await post(stranger, url)
        await stranger.aclose()
    await lane.aclose()
    assert answer.content == ANSWER
    assert answer.extensions["network_stream"].get_extra_info("ssl_object") is not None
    assert len(requests) == 1


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    lane = transport(AsyncioBackend())
    timeouts = {"connect": 1.0, "read": 0.2, "write": 1.0, "pool": 1.0}
    async with http_server(answer=False) as (url, requests):
        with pytest.raises(httpx.ReadTimeout, match=r"no answer within 0\.2 s"):
            await post(lane, url, timeout=timeouts)
    await lane.aclose()
    assert len(requests) == 1


async def test_a_request_leaves_in_one_send_when_its_answer_is_awaited() -> None:
    """httpcore writes head, body and end one by one; they are held until the answer is
    read, so the server sees the request whole, and a write reaching WRITE_COALESCE_LIMIT
    goes out at once: a connection never holds more than that of a request."""
    backend = AsyncioBackend()
    async with http_server() as (url, requests):
        port = int(url.rsplit(":", 1)[1])
        stream = await backend.connect_tcp("127.0.0.1", port, timeout=1.0)
        head = b"POST /api/addMessage HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"
        await stream.write(head, timeout=1.0)
        await stream.write(b"{}", timeout=1.0)
        await stream.write(b"", timeout=1.0)
        assert stream.unsent_bytes == len(head) + 2
        answer = await stream.read(65536, timeout=1.0)
        assert stream.unsent_bytes == 0
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert requests == [head + b"{}"]

        body = b"x" * WRITE_COALESCE_LIMIT
        head = b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        await stream.write(head, timeout=1.0)
        assert stream.unsent_bytes == len(head)
        await stream.write(body, timeout=1.0)
        assert stream.unsent_bytes == 0  # past the bound: sent without waiting for a read
        await stream.read(65536, timeout=1.0)
        await stream.aclose()
    assert requests[1] == head + body


async def test_a_body_the_server_does_not_take_is_a_write_timeout() -> None:
    """A body far past the coalescing bound and the kernel's buffers, to a server that
    never reads: the write timeout still bounds the send."""
    stalled = asyncio.Event()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stalled.wait()
        writer.close()

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lane = transport(AsyncioBackend())
    request = httpx.Request(
        "POST",
        f"http://127.0.0.1:{port}/api/addMessage",
        content=b"x" * (64 << 20),
        extensions={"timeout": {"connect": 1.0, "read": 5.0, "write": 0.2, "pool": 1.0}},
    )
    with pytest.raises(httpx.WriteTimeout, match=r"could not send within 0\.2 s"):
        await lane.handle_async_request(request)
    await lane.aclose()
    stalled.set()
    server.close()
    await server.wait_closed()


async def test_a_busy_lane_makes_the_next_request_wait_at_most_the_pool_timeout() -> None:
    lane = transport(AsyncioBackend())
    timeouts = {"connect": 1.0, "read": 5.0, "write": 1.0, "pool": 0.2}
    arrived = asyncio.Event()
    async with http_server(answer=False, arrived=arrived) as (url, requests):
        first = asyncio.create_task(post(lane, url, timeout=timeouts))
        async with asyncio.timeout(5):
            await arrived.wait()  # the server holds the first request, unanswered
        with pytest.raises(httpx.PoolTimeout, match=r"no free connection within 0\.2 s"):
            await post(lane, url, timeout=timeouts)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert len(requests) == 1  # the second request never went out
    async with http_server() as (url, requests):
        # the cancelled request gave its lane back (and closed its half-used connection)
        answer = await post(lane, url, timeout=timeouts)
    assert answer.status_code == 200
    await lane.aclose()


async def test_a_kept_connection_expires_after_the_keep_alive_expiry() -> None:
    now = [1000.0]
    backend = AsyncioBackend()
    lane = UplinkTransport(
        ssl_context=httpx.create_ssl_context(),
        max_connections=1,
        backend=backend,
        clock=lambda: now[0],
    )
    async with http_server() as (url, requests):
        await post(lane, url)
        now[0] += KEEPALIVE_EXPIRY  # at the expiry: still kept
        await post(lane, url)
        assert backend.connections == 1
        now[0] += KEEPALIVE_EXPIRY + 0.001  # past it: a new connection
        await post(lane, url)
    await lane.aclose()
    assert len(requests) == 3
    assert backend.connections == 2


async def test_an_answer_saying_connection_close_is_not_kept() -> None:
    ended: list[asyncio.Event] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Its own event: the next connection's handler may start before this one ends.
        ended.append(this_one_ended := asyncio.Event())
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                % (len(ANSWER), ANSWER)
            )
            await writer.drain()
            await reader.read()  # the client closes, not the server
        writer.close()
        this_one_ended.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    backend = AsyncioBackend()
    lane = transport(backend)
    answers = [await post(lane, url) for _ in range(2)]
    await lane.aclose()
    async with asyncio.timeout(5):  # each connection ended by our close
        await asyncio.gather(*(event.wait() for event in ended))
    server.close()
    await server.wait_closed()
    assert [answer.content for answer in answers] == [ANSWER, ANSWER]
    assert backend.connections == 2


async def test_an_answer_head_past_its_bound_is_a_protocol_error() -> None:
    """Headers that never end (a broken proxy, a hostile server) are not buffered without
    end: past MAX_ANSWER_HEAD the answer fails as the link's fault."""
    ended = asyncio.Event()

    async def endless_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\n")
            for n in range(4 * MAX_ANSWER_HEAD // 64):
                writer.write(b"X-Filler-%06d: %s\r\n" % (n, b"x" * 45))
            await writer.drain()
            await reader.read()  # until the client closes
        writer.close()
        ended.set()

    server = await asyncio.start_server(endless_head, "127.0.0.1", 0)
    lane = transport(AsyncioBackend())
    with pytest.raises(httpx.RemoteProtocolError):
        await post(lane, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    await lane.aclose()
    async with asyncio.timeout(5):  # the failed exchange closed its connection
        await ended.wait()
    server.close()
    await server.wait_closed()


async def test_nobody_listening_is_a_connect_error() -> None:
    sock_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = sock_server.sockets[0].getsockname()[1]
    sock_server.close()
    await sock_server.wait_closed()
    lane = transport(AsyncioBackend())
    with pytest.raises(httpx.ConnectError):
        await post(lane, f"http://127.0.0.1:{port}")
    await lane.aclose()


async def test_through_a_proxy_the_request_names_the_whole_url() -> None:
    backend = AsyncioBackend()
    async with http_server() as (proxy_url, requests):
        lane = transport(backend, proxy=proxy_url)
        answer = await post(lane, "http://onlinesim.example")
        await lane.aclose()
    assert answer.content == ANSWER
    assert requests[0].startswith(b"POST http://onlinesim.example/api/addMessage HTTP/1.1\r\n")
    assert backend.connections == 1  # the proxy's connection, on our backend too


def test_a_proxy_of_another_scheme_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'ftp://proxy:21': the scheme must be"):
        transport(AsyncioBackend(), proxy="ftp://proxy:21")


async def test_a_connection_the_server_reset_while_idle_is_not_reused() -> None:
    backend = AsyncioBackend()
    lane = transport(backend)
    async with http_server(reset_after_answer=True) as (url, requests):
        first = await post(lane, url)
        # Wait until the idle pooled connection has seen the server's reset.
        with pytest.raises(httpcore.ReadError):
            await first.extensions["network_stream"].read(1, timeout=5)
        second = await post(lane, url)
    await lane.aclose()
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(requests) == 2
    assert backend.connections == 2


async def test_a_server_pushing_more_than_is_read_fills_at_most_the_read_bound() -> None:
    """1 MiB arrives at once; while nobody reads, one connection holds at most
    READ_BUFFER_LIMIT of it (plus one socket read), the rest stays in the kernel."""
    pushed = 1 << 20

    served = asyncio.Event()

    async def push(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % pushed)
            writer.write(b"x" * pushed)
            await writer.drain()
            await reader.read()  # until the client closes
        except ConnectionError:
            pass
        finally:
            writer.close()
            served.set()

    server = await asyncio.start_server(push, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = AsyncioBackend()
    lane = transport(backend)
    request = httpx.Request("GET", f"http://127.0.0.1:{port}/big")
    response = await lane.handle_async_request(request)
    stream = response.extensions["network_stream"]
    held = 0
    for _ in range(200):  # the loop delivers what the socket has; nobody reads it
        await asyncio.sleep(0)  # a turn of the loop, not a wait for time
        held = max(held, stream.unread_bytes)
        if held >= READ_BUFFER_LIMIT:
            break
    assert 0 < held <= READ_BUFFER_LIMIT + 256 * 1024
    body = b"".join([chunk async for chunk in response.aiter_raw()])
    assert len(body) == pushed  # nothing lost by the pause
    await response.aclose()
    await lane.aclose()
    async with asyncio.timeout(5):
        await served.wait()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("environment", "url", "proxy"),
    [
        ({}, "https://onlinesim.example/api/resellers/", None),
        (
            {"HTTPS_PROXY": "http://proxy:3128"},
            "https://onlinesim.example/api/",
            "http://proxy:3128",
        ),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8000/api/", None),
        ({"ALL_PROXY": "http://proxy:3128"}, "http://10.0.0.5/api/", "http://proxy:3128"),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "onlinesim.example"},
            "https://onlinesim.example/api/",
            None,
        ),
    ],
)
def test_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], url: str, proxy: str | None
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert environment_proxy(url) == proxy


@pytest.fixture
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_a_proxy_without_scheme_is_http_as_httpx_takes_it(
    clean_proxy_environment: pytest.MonkeyPatch,
) -> None:
    clean_proxy_environment.setenv("HTTPS_PROXY", "proxy.example:3128")
    assert environment_proxy("https://onlinesim.example/api/") == "http://proxy.example:3128"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("HTTPS_PROXY", "ftp://proxy:21", "scheme 'ftp'"),
        ("https_proxy", "http://[bad", "not a URL"),
        ("HTTPS_PROXY", "http://a b:3128", "host 'a b'"),
        ("HTTPS_PROXY", "http://proxy:99999", "not a URL"),
        ("HTTPS_PROXY", "http://", "no host"),
        ("ALL_PROXY", "http://:8080", "no host"),
        ("ALL_PROXY", "socks5://proxy:1080", "socksio"),
    ],
)
def test_a_malformed_proxy_variable_is_a_config_error_naming_it(
    clean_proxy_environment: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    clean_proxy_environment.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        environment_proxy("https://onlinesim.example/api/")
    assert caught.value.key == name
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"environment: {name}: ")


def test_a_malformed_proxy_variable_stops_the_client_at_its_start(
    clean_proxy_environment: pytest.MonkeyPatch,
) -> None:
    clean_proxy_environment.setenv("HTTPS_PROXY", "http://")
    with pytest.raises(ConfigError, match="HTTPS_PROXY"):
        OnlineSimClient(UplinkSettings(base_url="https://onlinesim.example/api", api_key="k"))


async def test_concurrent_requests_share_at_most_max_connections() -> None:
    backend = AsyncioBackend()
    lanes = UplinkTransport(
        ssl_context=httpx.create_ssl_context(), max_connections=2, backend=backend
    )
    async with http_server() as (url, requests):
        answers = await asyncio.gather(*(post(lanes, url) for _ in range(20)))
    await lanes.aclose()
    assert [answer.status_code for answer in answers] == [200] * 20
    assert len(requests) == 20
    assert backend.connections == 2  # both lanes used, never a third connection
