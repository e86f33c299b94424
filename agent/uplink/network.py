"""httpx's transport on plain asyncio streams: the uplink's HTTP without anyio in between.

httpcore (httpx's engine) reaches the network through a *network backend*; under asyncio
its default is anyio's, which wraps every read and write in a cancel scope and asks
sniffio which event loop runs, on every call. In a backlog drain that was 30% of the
agent's CPU per addMessage. :class:`AsyncioBackend` is the same job on
``asyncio.open_connection`` streams with ``asyncio.timeout``, through httpcore's
documented extension point (``network_backend=``); it raises httpcore's own exceptions,
which httpx's transport maps to ``httpx.ConnectError``, ``httpx.ReadTimeout``... as before.

:func:`lane_transport` builds the ``httpx.AsyncHTTPTransport`` of one uplink connection
on it. httpx takes no network backend, so the transport's connection pool is replaced by
an equal one that has it (``_pool`` is the one attribute of httpx relied on here;
tests/uplink/test_network.py fails if a new httpx stops using it). With a proxy in the
environment the stock pool is kept: proxies are rare on a site, and correct beats fast.
"""

# httpcore's interface takes the timeouts as arguments, so its methods do too.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import ssl
import typing

import httpcore
import httpx

ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as httpcore wants it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout(f"no answer within {timeout:g} s") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout(f"could not send within {timeout:g} s") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):  # closing a connection the peer already reset
            await self._writer.wait_closed()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"TLS handshake not done within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            # Asked of an idle pooled connection: did the server close it or send
            # something? asyncio reads eagerly into the StreamReader, so the socket itself
            # never looks readable; the reader's buffer (``_buffer`` since Python 3.4: there
            # is no public "bytes waiting") and its end-of-file say it instead.
            return self._reader.at_eof() or bool(getattr(self._reader, "_buffer", b""))
        name = {
            "ssl_object": "ssl_object",
            "client_addr": "sockname",
            "server_addr": "peername",
            "socket": "socket",
        }.get(info)
        return self._writer.get_extra_info(name) if name is not None else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network on asyncio streams; counts the connections it opened."""

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
        local = (local_address, 0) if local_address is not None else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection within {timeout:g} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        self.connections += 1
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection within {timeout:g} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        self.connections += 1
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def lane_transport(
    ssl_context: ssl.SSLContext, proxy: str | None, backend: AsyncioBackend
) -> httpx.AsyncHTTPTransport:
    """An httpx transport with one connection; on ``backend`` unless there is a proxy."""
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=ONE_CONNECTION, proxy=proxy)
    if proxy is None:
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=ONE_CONNECTION.max_connections,
            max_keepalive_connections=ONE_CONNECTION.max_keepalive_connections,
            keepalive_expiry=ONE_CONNECTION.keepalive_expiry,
            network_backend=backend,
        )
    return transport
