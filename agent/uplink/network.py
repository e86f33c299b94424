"""The uplink's HTTP transport: httpcore's connection pool on plain asyncio, behind httpx's
transport interface. Public, documented API of every library only (docs/uplink.md, "The
HTTP stack").

httpcore (httpx's engine) reaches the network through a *network backend*; under asyncio
its default is anyio's, which wraps every read and write in a cancel scope and asks
sniffio which event loop runs, on every call. In a backlog drain that was 30% of the
agent's CPU per addMessage. :class:`AsyncioBackend` does the same job on an
:class:`asyncio.Protocol` of ours, handed to httpcore through its documented extension
point (``AsyncConnectionPool(network_backend=...)``). It raises httpcore's exceptions.

:class:`UplinkTransport` is an ``httpx.AsyncBaseTransport`` (httpx's documented interface
for custom transports) over that pool, or over httpcore's proxy pool when the environment
names a proxy. It translates httpcore's exceptions into httpx's (``httpx.ConnectError``,
``httpx.ReadTimeout``...), which :func:`agent.uplink.client.map_errors` then turns into
the agent's.
"""

# httpcore's interface takes the timeouts as arguments, so its methods do too.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import typing
from collections.abc import AsyncIterator, Iterator

import h11
import httpcore
import httpx

#: Idle pooled connections are closed after this long (httpx's default).
KEEPALIVE_EXPIRY = 5.0
#: Bytes one connection holds unread before it stops reading from its socket: the bound of
#: what a server can push ahead of what httpcore has asked for.
READ_BUFFER_LIMIT = 256 * 1024
#: Bytes of a request one connection holds before sending them without waiting for the
#: rest: the bound of the coalescing of a request's writes (a longer body is sent as it is
#: written, each write past the bound within the write timeout).
WRITE_COALESCE_LIMIT = 64 * 1024

# httpcore's exception -> httpx's of the same meaning (httpx's transport contract).
_HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
}


class _Connection(asyncio.Protocol):
    """What one connection received, whether it ended, and both directions' flow control.

    Ours rather than asyncio's ``StreamReader``: httpcore asks an idle pooled connection
    whether the server closed it or sent something (``is_readable``), and a
    ``StreamReader`` has no public way to tell that bytes are waiting.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.ended = False  # end of file, or the connection is lost
        self.error: Exception | None = None
        self._arrived: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > READ_BUFFER_LIMIT and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake_reader()
        return False  # close our side too: HTTP/1.1 never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.received[:max_bytes])
        del self.received[:max_bytes]
        if self._reading_paused and len(self.received) <= READ_BUFFER_LIMIT // 2:
            self._reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
        return data

    async def arrival(self, timeout: float | None) -> bool:
        """Until bytes arrive or the connection ends (True) or ``timeout`` passes (False).

        A timer on the future rather than ``asyncio.timeout()``: this runs once per read,
        and the context manager's task bookkeeping cost more than the wait itself.
        """
        loop = asyncio.get_running_loop()
        arrived = self._arrived = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, arrived)
        try:
            return await arrived
        finally:
            self._arrived = None
            if timer is not None:
                timer.cancel()

    async def drained(self) -> None:
        """Until the transport takes writes again."""
        if self._writable is not None:
            await asyncio.shield(self._writable)

    def _wake_reader(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(True)


def _expire(arrived: asyncio.Future[bool]) -> None:
    if not arrived.done():
        arrived.set_result(False)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as httpcore wants it."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        # httpcore writes a request's head, its body and its end (empty) one by one: held
        # here until the answer is read (or WRITE_COALESCE_LIMIT is reached), they leave in
        # one send and one TCP segment instead of two.
        self._unsent: list[bytes] = []
        self._unsent_size = 0

    @property
    def unread_bytes(self) -> int:
        """Bytes received and not yet read: what READ_BUFFER_LIMIT bounds."""
        return len(self._connection.received)

    @property
    def _transport(self) -> asyncio.Transport:
        transport = self._connection.transport
        assert transport is not None  # set by connection_made before the stream exists
        return transport

    @property
    def unsent_bytes(self) -> int:
        """Bytes written and held for the next send: what WRITE_COALESCE_LIMIT bounds."""
        return self._unsent_size

    def _send_unsent(self) -> None:
        if self._unsent:
            data = b"".join(self._unsent) if len(self._unsent) > 1 else self._unsent[0]
            self._unsent.clear()
            self._unsent_size = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # The request is complete when its answer is awaited: send what was held.
        self._send_unsent()
        connection = self._connection
        waited = connection.received or connection.ended or await connection.arrival(timeout)
        if not waited:
            raise httpcore.ReadTimeout(f"no answer within {timeout:g} s")
        if connection.received:
            return connection.take(max_bytes)
        if connection.error is not None:
            error = connection.error
            raise httpcore.ReadError(str(error) or type(error).__name__) from error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        connection = self._connection
        if connection.ended or self._transport.is_closing():
            error = connection.error
            raise httpcore.WriteError(str(error) if error else "the connection is closed")
        self._unsent.append(buffer)
        self._unsent_size += len(buffer)
        if self._unsent_size < WRITE_COALESCE_LIMIT:
            return
        self._send_unsent()
        try:
            async with asyncio.timeout(timeout):
                await connection.drained()
        except TimeoutError:
            raise httpcore.WriteTimeout(f"could not send within {timeout:g} s") from None
        if connection.error is not None:
            error = connection.error
            raise httpcore.WriteError(str(error) or type(error).__name__) from error

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._unsent.clear()  # a request never completed: none of it goes out
        self._unsent_size = 0
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._send_unsent()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    self._transport,
                    self._connection,
                    ssl_context,
                    server_hostname=server_hostname,
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"TLS handshake not done within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:  # a refused certificate included
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if tls is None:  # the connection ended during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._connection.transport = tls
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            # Asked of an idle pooled connection: did the server close it or send
            # something? Either way it must not carry the next request.
            return bool(self._connection.received) or self._connection.ended
        name = {
            "ssl_object": "ssl_object",
            "client_addr": "sockname",
            "server_addr": "peername",
            "socket": "socket",
        }.get(info)
        return self._transport.get_extra_info(name) if name is not None else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network on asyncio; counts the connections it opened."""

    def __init__(self) -> None:
        self.connections = 0

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address is not None else None
        with _connecting(timeout):
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port, local_addr=local
                )
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        self.connections += 1
        return AsyncioStream(connection)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        with _connecting(timeout):
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_unix_connection(_Connection, path)
        self.connections += 1
        return AsyncioStream(connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@contextlib.contextmanager
def _connecting(timeout: float | None) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"no connection within {timeout:g} s") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc


def _as_httpx(exc: BaseException, request: httpx.Request) -> BaseException:
    """httpcore's and h11's exceptions as httpx's, in this one place; others as they are.

    A function rather than only a context manager: the direct lanes call it from plain
    ``except`` clauses, which cost nothing when nothing is raised.
    """
    if isinstance(exc, httpcore.TimeoutException):
        return _HTTPX_ERRORS.get(type(exc), httpx.TimeoutException)(str(exc), request=request)
    if isinstance(exc, httpcore.NetworkError | httpcore.ProtocolError | httpcore.ProxyError):
        return _HTTPX_ERRORS.get(type(exc), httpx.TransportError)(str(exc), request=request)
    if isinstance(exc, httpcore.UnsupportedProtocol):
        return httpx.UnsupportedProtocol(str(exc), request=request)
    if isinstance(exc, h11.RemoteProtocolError):  # the server's framing
        return httpx.RemoteProtocolError(str(exc), request=request)
    if isinstance(exc, h11.LocalProtocolError):  # ours, refused by h11
        return httpx.LocalProtocolError(str(exc), request=request)
    return exc


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    """:func:`_as_httpx` around a block."""
    try:
        yield
    except Exception as exc:
        translated = _as_httpx(exc, request)
        if translated is exc:
            raise
        raise translated from exc


class _AnswerStream(httpx.AsyncByteStream):
    """An answer's body as httpx reads it, httpcore's errors translated; ``done`` is called
    once when it is closed (its connection is then free for the next request)."""

    def __init__(
        self, answer: httpcore.Response, request: httpx.Request, done: typing.Callable[[], None]
    ) -> None:
        self._answer = answer
        self._request = request
        self._done: typing.Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._answer.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        try:
            with _httpx_errors(self._request):
                await self._answer.aclose()
        finally:
            if self._done is not None:
                self._done()
                self._done = None


class _PoolLane:
    """A lane through the environment's proxy: httpcore's proxy pool of one connection."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle(
        self, request: httpx.Request, done: typing.Callable[[], None]
    ) -> httpx.Response:
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.content,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            answer = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_AnswerStream(answer, request, done),
            extensions=answer.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


#: What a direct lane reads from its connection at a time.
_READ_SIZE = 64 * 1024
#: The longest answer head (status line and headers) a direct lane reads; past it the
#: answer is a protocol error, the link's fault. OnlineSim's are a few hundred bytes.
MAX_ANSWER_HEAD = 16 * 1024
_DEFAULT_PORTS = {b"http": 80, b"https": 443}


class _DirectLane:
    """A lane straight to the server: one kept-alive HTTP/1.1 connection, framed by h11,
    one request at a time (the next waits, at most the pool timeout).

    httpcore's pool and connection do the same for one connection, but through anyio's
    lock, events and shielded cancel scopes and a sniffio lookup on every request, which
    together cost more CPU than h11's framing itself (bench/uplink_bench.py). What they
    keep, this keeps: a connection is reused only if it is idle, younger than
    KEEPALIVE_EXPIRY since its last answer and unreadable (the server neither closed it nor
    sent anything unasked); anything else is closed. A request is never sent twice.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        backend: AsyncioBackend,
        clock: typing.Callable[[], float],
    ) -> None:
        self._ssl_context = ssl_context
        self._backend = backend
        self._clock = clock
        self._turn = asyncio.Lock()
        self._stream: AsyncioStream | None = None
        self._framing = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_ANSWER_HEAD)
        self._origin: tuple[bytes, bytes, int] | None = None
        self._idle_since = 0.0

    async def handle(
        self, request: httpx.Request, done: typing.Callable[[], None]
    ) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        scheme = url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"URL {str(url)[:200]!r}: the scheme must be http or https", request=request
            )
        origin = (scheme, url.raw_host, url.port or _DEFAULT_PORTS[scheme])
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._turn.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"no free connection within {timeouts.get('pool'):g} s", request=request
            ) from None

        def release(keep: bool) -> None:
            if not keep:
                self._drop()
            elif self._stream is not None:
                self._framing.start_next_cycle()
                self._idle_since = self._clock()
            self._turn.release()

        def finished(keep: bool) -> None:
            release(keep)
            done()

        try:
            stream = await self._connected(origin, timeouts)
            head = await self._exchange(stream, request, timeouts)
        except BaseException as exc:
            release(keep=False)  # half an exchange: the connection's state is unknown
            translated = _as_httpx(exc, request)
            if translated is exc:
                raise
            raise translated from exc
        return httpx.Response(
            status_code=head.status_code,
            headers=head.headers,
            stream=_DirectAnswer(self, stream, request, timeouts.get("read"), finished),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": head.reason,
                "network_stream": stream,
            },
            request=request,
        )

    async def _connected(
        self, origin: tuple[bytes, bytes, int], timeouts: typing.Mapping[str, float | None]
    ) -> AsyncioStream:
        stream = self._stream
        if stream is not None and (
            origin != self._origin
            or self._clock() - self._idle_since > KEEPALIVE_EXPIRY
            or stream.get_extra_info("is_readable")
        ):
            self._drop()
            stream = None
        if stream is None:
            scheme, host, port = origin
            name = host.decode("ascii")
            stream = await self._backend.connect_tcp(name, port, timeout=timeouts.get("connect"))
            if scheme == b"https":
                try:
                    await stream.start_tls(
                        self._ssl_context, server_hostname=name, timeout=timeouts.get("connect")
                    )
                except BaseException:
                    await stream.aclose()
                    raise
            self._stream, self._origin = stream, origin
            self._framing = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_ANSWER_HEAD)
        return stream

    async def _exchange(
        self,
        stream: AsyncioStream,
        request: httpx.Request,
        timeouts: typing.Mapping[str, float | None],
    ) -> h11.Response:
        """Send ``request`` whole, then read up to its answer's head."""
        framing = self._framing
        head = h11.Request(
            method=request.method, target=request.url.raw_path, headers=request.headers.raw
        )
        wire = [framing.send(head) or b""]
        if request.content:
            wire.append(framing.send(h11.Data(data=request.content)) or b"")
        wire.append(framing.send(h11.EndOfMessage()) or b"")
        await stream.write(b"".join(wire), timeout=timeouts.get("write"))
        while True:
            event = await self.next_event(stream, timeouts.get("read"))
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):  # a 1xx: the head follows
                raise httpcore.RemoteProtocolError(f"an answer began with {type(event).__name__}")

    async def next_event(self, stream: AsyncioStream, timeout: float | None) -> typing.Any:
        framing = self._framing
        while True:
            event = framing.next_event()
            if event is not h11.NEED_DATA:
                return event
            framing.receive_data(await stream.read(_READ_SIZE, timeout=timeout))

    def reusable(self) -> bool:
        """Whether both sides ended the exchange and keep the connection open."""
        return self._framing.our_state is h11.DONE and self._framing.their_state is h11.DONE

    def _drop(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    async def aclose(self) -> None:
        self._drop()


class _DirectAnswer(httpx.AsyncByteStream):
    """A direct lane's answer body; closing it frees the lane (and keeps its connection
    when the exchange ended cleanly and both sides allow keep-alive)."""

    def __init__(
        self,
        lane: _DirectLane,
        stream: AsyncioStream,
        request: httpx.Request,
        read_timeout: float | None,
        finished: typing.Callable[[bool], None],
    ) -> None:
        self._lane = lane
        self._stream = stream
        self._request = request
        self._read_timeout = read_timeout
        self._finished: typing.Callable[[bool], None] | None = finished
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            while not self._complete:
                event = await self._lane.next_event(self._stream, self._read_timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._complete = True
                else:  # h11 ends a body with EndOfMessage or an error; never loop on more
                    raise httpcore.RemoteProtocolError(
                        f"an answer's body went on with {type(event).__name__}"
                    )

    async def aclose(self) -> None:
        if self._finished is not None:
            finished, self._finished = self._finished, None
            finished(self._complete and self._lane.reusable())


class UplinkTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` kept-alive connections on ``backend``, through the
    environment's ``proxy`` when there is one (``http://``, ``https://``, ``socks5://``).

    Each connection is a *lane* and a request takes the least busy lane: straight to the
    server, a connection of our own framed by h11 (:class:`_DirectLane`); through a proxy,
    an httpcore proxy pool of one connection. One pool of ``max_connections`` would do the
    same job, but httpcore's pool looks at every connection for every queued request
    whenever a request starts or ends, which with 8 connections busy was a quarter of the
    agent's CPU in a backlog drain. ``clock`` (monotonic seconds) times the keep-alive
    expiry of direct lanes.

    Redirects are not followed (a transport never does): a moved URL or a captive portal is
    news for a person, and following would turn a POST into a GET.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        backend: AsyncioBackend,
        proxy: str | None = None,
        clock: typing.Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections {max_connections} < 1")
        self._lanes: list[_DirectLane | _PoolLane] = [
            _DirectLane(ssl_context, backend, clock)
            if proxy is None
            else _PoolLane(_one_connection_pool(ssl_context, backend, proxy))
            for _ in range(max_connections)
        ]
        self._busy = [0] * max_connections  # requests on each lane, until their answer closes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        lane = self._busy.index(min(self._busy))
        self._busy[lane] += 1

        def done() -> None:
            self._busy[lane] -= 1

        try:
            return await self._lanes[lane].handle(request, done)
        except BaseException:
            done()
            raise

    async def aclose(self) -> None:
        for lane in self._lanes:
            await lane.aclose()


def _one_connection_pool(
    ssl_context: ssl.SSLContext, backend: AsyncioBackend, proxy: str | None
) -> httpcore.AsyncConnectionPool:
    options: dict[str, typing.Any] = {
        "ssl_context": ssl_context,
        "max_connections": 1,
        "max_keepalive_connections": 1,
        "keepalive_expiry": KEEPALIVE_EXPIRY,
        "network_backend": backend,
    }
    if proxy is None:
        return httpcore.AsyncConnectionPool(**options)
    url = httpx.URL(proxy)
    auth = (url.username, url.password) if url.username else None
    proxy_url = httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
    )
    if url.scheme in ("http", "https"):
        return httpcore.AsyncHTTPProxy(proxy_url=proxy_url, proxy_auth=auth, **options)
    if url.scheme in ("socks5", "socks5h"):
        return httpcore.AsyncSOCKSProxy(proxy_url=proxy_url, proxy_auth=auth, **options)
    raise ValueError(f"proxy {proxy!r}: the scheme must be http, https or socks5")
