"""agent.httpserver on its own, over real sockets on 127.0.0.1: what the webhook's tests
(tests/webhook/) do not reach through the webhook app: a body the app does not read yet,
requests sent before the previous answer, an app that fails or gives no answer, HEAD."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator

import pytest

from agent.httpserver import BODY_BUFFER, HttpServer, Limits, Message, Receive, Scope, Send
from agent.httpserver import listen_socket as bound_socket
from tests.webhook import read_until_closed, status_of

OPEN = Limits(header_timeout=5.0, busy_connections=None, max_connections=16, max_per_source=None)


@contextlib.asynccontextmanager
async def serving(app: object) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(app, OPEN)  # type: ignore[arg-type]
    sock = bound_socket("127.0.0.1", 0)
    await server.start(sock)
    try:
        yield server, sock.getsockname()[1]
    finally:
        await server.stop()


async def answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_a_body_the_app_does_not_read_yet_is_held_up_to_the_bound() -> None:
    may_read = asyncio.Event()
    arrived = asyncio.Event()
    received: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        arrived.set()
        await may_read.wait()
        size = 0
        while True:
            message: Message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        received.append(size)
        await answer(send, 200, b"ok")

    body = b"b" * (4 << 20)
    async with serving(app) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        async with asyncio.timeout(5):
            await arrived.wait()
        (connection,) = server.connections
        held = 0
        for _ in range(200):  # turns of the loop while the client keeps sending
            await asyncio.sleep(0)  # not a wait for time
            assert connection.cycle is not None
            held = max(held, connection.cycle.buffered)
        # One socket read (at most 256 KiB) may land past the bound before reading stops.
        assert 0 < held <= BODY_BUFFER + 256 * 1024
        may_read.set()
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
    assert status_of(head) == 200
    assert received == [len(body)]  # nothing lost by the pauses


async def test_requests_sent_before_the_answer_are_answered_in_order() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await answer(send, 200, scope["path"].encode())

    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(5)))
        writer.write(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = await read_until_closed(reader)
        writer.close()
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in answers.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"/0", b"/1", b"/2", b"/3", b"/4", b"/last"]


@pytest.mark.parametrize("fault", ["raises", "raises after the head", "returns without answering"])
async def test_an_app_fault_is_one_500_and_the_server_serves_on(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if scope["path"] == "/fine":
            await answer(send, 200, b"fine")
        elif fault == "raises":
            raise ValueError("a bug")
        elif fault == "raises after the head":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise ValueError("a bug")

    async with serving(app) as (_, port):
        for path, status in (("/bug", 500), ("/fine", 200)):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert status_of(await read_until_closed(reader)) == status
            writer.close()
    assert any("/bug" in record.getMessage() for record in caplog.records)


async def test_head_gets_the_head_alone() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await answer(send, 200, b"the body")

    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await read_until_closed(reader)
        writer.close()
    assert status_of(raw) == 200
    assert b"content-length: 8" in raw.lower()
    assert raw.endswith(b"\r\n\r\n")  # no body after the head


async def one_request_to_stop(
    app: object,
) -> tuple[HttpServer, asyncio.StreamReader, asyncio.StreamWriter]:
    """A server with a short stop grace, and a request sent to ``app`` (the test stops it)."""
    server = HttpServer(app, OPEN, stop_grace=0.1)  # type: ignore[arg-type]
    sock = bound_socket("127.0.0.1", 0)
    await server.start(sock)
    reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return server, reader, writer


async def test_stop_cancels_an_app_that_ignores_the_cut_after_the_grace() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never answers, never reads the disconnect
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server, reader, writer = await one_request_to_stop(app)
    async with asyncio.timeout(5):
        await started.wait()
        await server.stop()
    assert cancelled.is_set()
    assert not server.connections
    assert not server.tasks
    assert await read_until_closed(reader) == b""
    writer.close()


# -- found by a hostile review: a head that arrives whole, smuggling, a half-close ---------


async def echo_path(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await answer(send, 200, scope["path"].encode())


@pytest.mark.parametrize(
    "padding",
    [
        b"X-Padding: " + b"a" * (OPEN.max_header_bytes + 1) + b"\r\n",  # one long line
        b"a: b\r\n" * (OPEN.max_header_bytes // 6 + 1),  # many short ones
    ],
    ids=["one long header", "many short headers"],
)
async def test_a_head_past_the_bound_is_refused_even_when_it_arrives_in_one_read(
    padding: bytes,
) -> None:
    # h11 bounds only a head it is still waiting for: one arriving whole in one socket read
    # (up to 256 KiB) would reach the app.
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await echo_path(scope, receive, send)

    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n" + padding + b"\r\n")
        raw = await read_until_closed(reader)
        writer.close()
        # A head just inside the bound still passes, on the same server.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"GET /fits HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        filler = OPEN.max_header_bytes - len(head) - len(b"X: \r\n\r\n")
        writer.write(head + b"X: " + b"a" * filler + b"\r\n\r\n")
        fits = await read_until_closed(reader)
        writer.close()
    assert status_of(raw) in (400, None)  # None: the RST overtook the 400
    assert status_of(fits) == 200
    assert calls == ["/fits"]


async def test_a_chunk_line_past_the_bound_is_refused_even_when_it_arrives_in_one_read() -> None:
    bodies: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        bodies.append(message.get("body", b""))
        await answer(send, 200, b"read")

    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        extension = b";" + b"e" * (2 * OPEN.max_header_bytes)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1" + extension + b"\r\nx\r\n0\r\n\r\n"
        )
        raw = await read_until_closed(reader)
        writer.close()
    assert bodies == [b""]  # the app saw the head, never a byte past the long chunk line
    assert b"read" not in raw


async def test_content_length_with_transfer_encoding_is_refused_not_smuggled() -> None:
    # RFC 9112 6.3: such a request may be an attempt at smuggling; a proxy in front could
    # read the body by Content-Length and so take the second request as body.
    async with serving(echo_path) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        raw = await read_until_closed(reader)
        writer.close()
    assert status_of(raw) == 400
    assert b"/smuggled" not in raw
    assert b"/first" not in raw


async def half_close_seen(server: HttpServer) -> None:
    """Returns once the server has taken a client's half-close (the caller bounds the wait)."""
    for _ in itertools.count():
        if any(connection.peer_closed for connection in server.connections):
            return
        await asyncio.sleep(0)  # a turn of the loop, not a wait for time


async def test_a_client_that_half_closes_after_its_request_still_gets_the_answer() -> None:
    may_answer = asyncio.Event()
    arrived = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if scope["path"] == "/b":  # /a is answered at once; /b after the half-close is seen
            arrived.set()
            await may_answer.wait()
        await answer(send, 200, scope["path"].encode())

    async with serving(app) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.write_eof()  # shutdown(SHUT_WR): sent all it will, still reading
        async with asyncio.timeout(5):
            await arrived.wait()
            # The answer is held until the server has seen the end of the client's side.
            await half_close_seen(server)
        may_answer.set()
        raw = await read_until_closed(reader)  # and then the server closes its side
        writer.close()
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in raw.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"/a", b"/b"]


@pytest.mark.parametrize(("version", "close"), [("1.1", "Connection: close\r\n"), ("1.0", "")])
async def test_a_last_request_half_closed_still_gets_its_answer(version: str, close: str) -> None:
    may_answer = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await may_answer.wait()
        await answer(send, 200, b"late")

    async with serving(app) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET / HTTP/{version}\r\nHost: x\r\n{close}\r\n".encode())
        writer.write_eof()
        async with asyncio.timeout(5):
            await half_close_seen(server)
        may_answer.set()
        raw = await read_until_closed(reader)
        writer.close()
    assert status_of(raw) == 200
    assert raw.endswith(b"late")


@pytest.mark.parametrize(
    "request_",
    [
        b"GET /a HTTP/1.0\r\n\r\n\r\n",  # a stray CRLF, as old clients sent after a request
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nmore after the last request",
    ],
    ids=["1.0 and CRLF", "close and CRLF", "close and bytes"],
)
async def test_bytes_after_the_last_request_do_not_replace_its_answer(
    request_: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 9112 2.2: a server SHOULD ignore an empty line around a request. After the
    # request that says it is the last, nothing that follows is read as HTTP.
    async with serving(echo_path) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_)
        raw = await read_until_closed(reader)
        writer.close()
    assert status_of(raw) == 200
    assert raw.endswith(b"/a")
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_a_stray_crlf_then_a_half_close_still_gets_the_answer() -> None:
    async with serving(echo_path) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.0\r\n\r\n\r\n")
        writer.write_eof()
        raw = await read_until_closed(reader)
        writer.close()
    assert status_of(raw) == 200
    assert raw.endswith(b"/a")


async def test_stop_is_bounded_even_when_an_app_ignores_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # a bug: swallows the cut
                await release.wait()

    server, _, writer = await one_request_to_stop(stubborn)
    async with asyncio.timeout(5):
        await started.wait()
        await server.stop()  # returns: the grace, the cancel, the grace again
    (left,) = server.tasks
    assert not left.done()
    assert any("ignored" in record.getMessage() for record in caplog.records)
    release.set()
    async with asyncio.timeout(5):
        await left
    writer.close()


async def test_10000_requests_sent_at_once_and_never_read_hold_bounded_memory() -> None:
    async with serving(echo_path) as (server, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.pause_reading()  # never reads an answer
        writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n" * 10_000)  # 290 KB
        async with asyncio.timeout(5):
            for _ in itertools.count():  # until the server has accepted it
                if server.connections:
                    break
                await asyncio.sleep(0)  # a turn of the loop, not a wait for time
        (connection,) = server.connections
        unfed = in_h11 = unsent = 0
        for _ in range(2000):  # turns of the loop while the server answers what it can
            await asyncio.sleep(0)
            if connection.transport is None or connection.transport.is_closing():
                break
            unfed = max(unfed, len(connection.unfed))
            in_h11 = max(in_h11, len(connection.h11.trailing_data[0]))
            unsent = max(unsent, connection.transport.get_write_buffer_size())
        writer.close()
    # One socket read (256 KiB) waits unparsed; h11 holds at most two slices; what the
    # client does not take stays in the kernel, past asyncio's 64 KiB write mark.
    assert 0 < unfed <= 256 * 1024
    assert in_h11 <= 2 * OPEN.max_header_bytes
    assert unsent <= 64 * 1024 + 1024
