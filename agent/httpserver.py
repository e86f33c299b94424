"""A small HTTP/1.1 server for ASGI apps, in the caller's event loop: the webhook listener
and the OnlineSim stand-in run on it.

It is asyncio's documented server API (``loop.create_server`` and an ``asyncio.Protocol``
per connection) with h11 parsing and writing HTTP, as in httpx's and uvicorn's stacks. Ours
rather than uvicorn: everything the webhook needs beyond plain HTTP (connection caps, a cap
per source, a deadline per connection, signals left to the agent, a stop in milliseconds)
was available from uvicorn only by overriding its internals, which any release may change.
docs/bounds.md says why each limit is what it is.

- :class:`Limits`: how much one client, and all of them together, may take.
- :class:`HttpServer`: serves one ASGI app (HTTP scope only: no websockets, no lifespan).
- :func:`listen_socket` binds before the server starts, so that port 0 can pick a free
  port and the caller learns it (a busy port fails here, as an ``OSError``).
- :func:`reset_transport` cuts one connection with an RST.

What the server does on its own: a head past ``max_header_bytes`` (however it arrives), a
chunk line past twice that, a request with both Content-Length and Transfer-Encoding (a
possible smuggling) or malformed HTTP gets 400 and close; a client that half-closes after
its request still gets its answer, then the close, and bytes after a request that said it
was the last (HTTP/1.0, "Connection: close") are dropped, not read as HTTP; past
``busy_connections`` open connections a request gets 503 and close; a connection past
``max_connections``, or past ``max_per_source`` from one source, is reset as
soon as it is accepted and never counted against the other caps; from the moment a
connection is open or has had its answer, the next request's head must arrive within
``header_timeout`` or the connection is reset (slowloris), and a request being answered
gets one more ``header_timeout`` before it is reset too (a client that never reads its
answer); an idle kept-alive connection is closed after ``keep_alive``. Bodies are the app's
business; while the app does not read one, at most ``BODY_BUFFER`` of it is held and the
connection stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import logging
import socket
import struct
import typing
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import h11

log = logging.getLogger("simedge.httpserver")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: What a client did that the server answered or refused by itself, by the summary's name
#: for it (agent.logs.LogLimiter's kinds).
MALFORMED = "malformed requests"
BUSY = "requests answered 503 (busy)"
PER_SOURCE = "connections refused (per-source cap)"

#: A request body held for an app that does not read it yet; past it the connection stops
#: reading from its socket until the app reads.
BODY_BUFFER = 64 * 1024

#: Connections the kernel may hold accepted but not yet taken by us (listen(2)'s backlog,
#: which asyncio also takes as how many to accept per turn of the loop). Large, as
#: uvicorn's 2048: when it is full, Linux leaves a client's handshake half-done and has it
#: retry with growing waits, so a burst of connections would hold honest callers for
#: seconds; here a burst is accepted at once and refused or served by the caps.
ACCEPT_BACKLOG = 2048

_CLOSE = (b"connection", b"close")

# SO_LINGER on, 0 seconds: close() sends RST instead of FIN, which is what "connection
# reset by peer" is.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class Limits:
    """How much one client, and all of them together, may take of a listener.

    The defaults are the webhook's, facing the internet; ``None`` means no such limit (the
    OnlineSim stand-in, which only tests and the demo talk to, and whose faults hold
    answers for as long as asked).
    """

    header_timeout: float | None = 10.0
    keep_alive: float = 5.0  # seconds an idle keep-alive connection stays open
    max_header_bytes: int = 16 * 1024
    busy_connections: int | None = 200
    max_connections: int | None = 256
    # OnlineSim calls one at a time; 8 leaves room for its retries and for a health check
    # and a scraper sharing its address (or a reverse proxy in front, where every
    # connection comes from the proxy). A constant, not a setting: no honest client
    # needs more, and 8 from each of 32 sources are needed to fill max_connections.
    max_per_source: int | None = 8


#: Reports what a client did wrong: (kind, source, text). The server logs nothing about
#: clients itself, so that its owner can rate-limit by source.
ClientWarning = Callable[[str, str, str], None]


def source_of(host: str) -> str:
    """What counts as one client: an IPv4 address, or the /64 of an IPv6 one (a single
    host is usually given a whole /64). Anything else (a unix socket) is itself."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class HttpServer:
    """Serves ``app`` on a socket from :func:`listen_socket`, in the running event loop."""

    def __init__(
        self,
        app: App,
        limits: Limits,
        *,
        on_client_warning: ClientWarning | None = None,
        stop_grace: float = 2.0,
    ) -> None:
        self.app = app
        self.limits = limits
        self.warn: ClientWarning = on_client_warning or _log_client_warning
        self.stop_grace = stop_grace
        self.connections: set[_Connection] = set()
        # Open connections by source: only sources with one open, so at most
        # max_connections keys.
        self.per_source: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        """Listen on ``sock`` and accept connections; returns once it does."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), sock=sock, backlog=ACCEPT_BACKLOG
        )

    async def stop(self) -> None:
        """Stop listening, reset every open connection, and wait (``stop_grace`` at most)
        for the app's requests in progress; those still running then are cancelled, and
        given one more ``stop_grace`` to end: at most three graces in all.

        Cuts instead of draining: every answer of ours is short and can be asked again,
        and tests start and stop one server per test, so a stop must cost milliseconds.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Gone only once asyncio has closed their sockets (the RST is out), a turn later.
        lost = [connection.lost for connection in self.connections]
        for connection in list(self.connections):
            connection.reset()
        if lost:
            await asyncio.wait(lost, timeout=self.stop_grace)
        if self.tasks:
            # Apps notice the cut (a disconnect, their owner's cut event) and return.
            _, late = await asyncio.wait(set(self.tasks), timeout=self.stop_grace)
            for task in late:
                task.cancel()
            if late:
                # One more grace for the cancellation: an app that swallows it must not
                # hold the agent's stop forever.
                _, stuck = await asyncio.wait(late, timeout=self.stop_grace)
                if stuck:
                    log.error("%d request(s) ignored their cancellation: left running", len(stuck))
        await server.wait_closed()

    def reset_client(self, client: tuple[str, int] | None) -> bool:
        """Reset the connection of ``client`` (the ASGI scope's client address)."""
        for connection in list(self.connections):
            if client is not None and connection.client == tuple(client):
                connection.reset()
                return True
        return False


def _log_client_warning(kind: str, source: str, text: str) -> None:
    log.warning("from %s: %s", source, text)


class _Connection(asyncio.Protocol):
    """One client connection: h11's state, the request being answered, the caps and the
    deadlines."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes
        )
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.source: str | None = None  # counted in server.per_source while open
        self.cycle: _Cycle | None = None
        # Bytes read but not yet given to h11; see feed().
        self.unfed = bytearray()
        self.h11_needs_data = True  # h11 has used up what it was given (NEED_DATA)
        self.fed = 0  # bytes given to h11 so far
        self.head_start = 0  # where in them the current request's head begins
        self.peer_closed = False  # the client half-closed after its request
        self.reading_paused = False
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.deadline: asyncio.TimerHandle | None = None
        self.cycle_at_deadline: _Cycle | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio's side -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport; uvloop's do not subclass asyncio.Transport.
        self.transport = typing.cast(asyncio.Transport, transport)
        self.client = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        source = source_of(self.client[0] if self.client else "")
        limits, server = self.limits, self.server
        if limits.max_per_source is not None and (
            server.per_source.get(source, 0) >= limits.max_per_source
        ):
            server.warn(
                PER_SOURCE,
                source,
                f"{source} has {limits.max_per_source} connections open already: refused",
            )
            reset_transport(transport)
            return
        if limits.max_connections is not None and (
            len(server.connections) >= limits.max_connections
        ):
            reset_transport(transport)
            return
        self.source = source
        server.per_source[source] = server.per_source.get(source, 0) + 1
        server.connections.add(self)
        self._arm_deadline()

    def data_received(self, data: bytes) -> None:
        if self.source is None:  # refused; the reset is on its way
            return
        self._disarm(idle=True)
        self.unfed += data
        self.feed()

    def eof_received(self) -> bool | None:
        # A client that sent its whole request and shut its side down (shutdown(SHUT_WR),
        # as `nc -N` or an HTTP/1.0 tool does) still reads: it gets its answer, then the
        # close. Anywhere else (idle, mid-head, mid-body) nothing can follow: close now.
        cycle = self.cycle
        if (
            self.source is None
            or cycle is None
            or cycle.response_complete
            or self.h11.their_state not in (h11.DONE, h11.MUST_CLOSE)
            or self.unfed
        ):
            return None
        self.peer_closed = True
        if self.h11.their_state is h11.DONE:  # (MUST_CLOSE: h11 closes after it anyway)
            self.h11.receive_data(b"")
            self.handle_events()  # h11 takes the close: this answer is the connection's last
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm(idle=True, deadline=True)
        server = self.server
        server.connections.discard(self)
        if self.source is not None:
            left = server.per_source[self.source] - 1
            if left:
                server.per_source[self.source] = left
            else:
                del server.per_source[self.source]
            self.source = None
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.wake()
        self.resume_writing()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # -- HTTP -----------------------------------------------------------------------------

    def feed(self) -> None:
        """Give h11 what was read, ``max_header_bytes`` at a time, and act on its events.

        h11 bounds only a line it is still waiting for, so a whole head or chunk line that
        came in one socket read (up to 256 KiB) would pass; fed in slices, no line can be
        more than twice the bound before h11 refuses it, and the head is measured exactly
        in _request. Bytes of a request that came before this answer is out stay here, and
        reading stops, until the answer is out.
        """
        step = self.limits.max_header_bytes
        transport = self.transport
        while transport is not None and not transport.is_closing():
            # Only once h11 has used up what it holds: a slice given while it still holds
            # requests sent ahead would let a line twice the bound through.
            if self.unfed and not self.reading_paused and self.h11_needs_data:
                if self.h11.their_state is h11.DONE:  # the next request, before our answer
                    self._pause_reading()
                    return
                if self.h11.their_state is h11.MUST_CLOSE:
                    self.unfed.clear()  # after the last request: nothing more is HTTP
                    return
                if len(self.unfed) <= step:  # the usual case: one read, one request
                    chunk = bytes(self.unfed)
                    self.unfed.clear()
                else:
                    chunk = bytes(self.unfed[:step])
                    del self.unfed[:step]
                self.fed += len(chunk)
                self.h11.receive_data(chunk)
            self.handle_events()
            if not self.unfed or self.reading_paused or not self.h11_needs_data:
                return

    def handle_events(self) -> None:
        self.h11_needs_data = False
        while self.transport is not None and not self.transport.is_closing():
            if self.h11.their_state is h11.MUST_CLOSE:
                # Their last request is in (HTTP/1.0, "Connection: close"): what follows
                # it in the same read (a stray CRLF, RFC 9112 2.2) is not a request, and
                # must not cost the answer a 400.
                self.h11_needs_data = True  # for feed() to drop the rest
                return
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                self._refuse(400, MALFORMED, "malformed HTTP request")
                return
            if event is h11.NEED_DATA:
                self.h11_needs_data = True
                return
            if isinstance(event, h11.ConnectionClosed):
                return
            if event is h11.PAUSED:
                # The next request has come before this one's answer is out: it waits.
                self._pause_reading()
                return
            if isinstance(event, h11.Request):
                self._request(event)
            elif isinstance(event, h11.Data) and self.cycle is not None:
                self.cycle.body.append(event.data)
                self.cycle.buffered += len(event.data)
                if self.cycle.buffered > BODY_BUFFER:
                    self._pause_reading()
                self.cycle.wake()
            elif isinstance(event, h11.EndOfMessage) and self.cycle is not None:
                self.cycle.body_complete = True
                self.cycle.wake()

    def _request(self, request: h11.Request) -> None:
        limits, server = self.limits, self.server
        head_size = self.fed - len(self.h11.trailing_data[0]) - self.head_start
        if head_size > limits.max_header_bytes:
            self._refuse(400, MALFORMED, f"request head of {head_size} bytes is over the limit")
            return
        names = {name for name, _ in request.headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            # RFC 9112 6.3: a possible request smuggling (a proxy in front may frame the
            # body by the other header); refused, and the connection with it.
            self._refuse(400, MALFORMED, "Content-Length with Transfer-Encoding: refused")
            return
        if limits.busy_connections is not None and (
            len(server.connections) > limits.busy_connections
        ):
            self._refuse(503, BUSY, "busy: request answered 503")
            return
        raw_path, _, query = request.target.partition(b"?")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": request.method.decode("ascii"),
            "root_path": "",
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "query_string": query,
            "headers": [(name, value) for name, value in request.headers],
        }
        cycle = self.cycle = _Cycle(self, scope)
        task = self.loop.create_task(cycle.run())
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    def _refuse(self, status: int, kind: str, text: str) -> None:
        """Answer ``status`` by ourselves, then close; the client hears why if it can."""
        assert self.transport is not None
        self.server.warn(kind, self.source or "unknown", text)
        try:
            body = f"{http.HTTPStatus(status).phrase}\n".encode()
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                _CLOSE,
            ]
            self.transport.write(
                self.h11.send(
                    h11.Response(
                        status_code=status,
                        headers=headers,
                        reason=http.HTTPStatus(status).phrase.encode(),
                    )
                )
                + self.h11.send(h11.Data(data=body))
                + self.h11.send(h11.EndOfMessage())
            )
        except h11.LocalProtocolError:
            pass  # an answer is already under way: the close says it all
        self.transport.close()

    def response_complete(self) -> None:
        """The answer is out: keep the connection for the next request, or close it."""
        assert self.transport is not None
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.cycle = None
            self.head_start = self.fed - len(self.h11.trailing_data[0])
            self._arm_deadline()
            self.idle = self.loop.call_later(self.limits.keep_alive, self._idle_passed)
            if self.reading_paused:
                self.reading_paused = False
                self.transport.resume_reading()
            self.feed()  # a request that came while this one was answered
        else:  # "Connection: close", HTTP/1.0, or a body the app left unread
            self.transport.close()

    def body_read(self) -> None:
        """The app took the body held: read from the socket again."""
        # Paused for a request that came before this answer is out (their side DONE):
        # that one waits for the next cycle.
        if (
            self.reading_paused
            and self.transport is not None
            and self.h11.their_state is not h11.DONE
        ):
            self.reading_paused = False
            self.transport.resume_reading()
            self.feed()  # what was read before the pause

    def reset(self) -> None:
        if self.transport is not None:
            reset_transport(self.transport)

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    # -- deadlines ------------------------------------------------------------------------

    def _arm_deadline(self) -> None:
        self._disarm(deadline=True)
        self.cycle_at_deadline = None
        if self.limits.header_timeout is not None:
            self.deadline = self.loop.call_later(self.limits.header_timeout, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self.deadline = None
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        if answering and cycle is not self.cycle_at_deadline:
            # The head came in time and the app is answering: one more period for it.
            assert self.limits.header_timeout is not None
            self.cycle_at_deadline = cycle
            self.deadline = self.loop.call_later(self.limits.header_timeout, self._deadline_passed)
            return
        self.reset()

    def _idle_passed(self) -> None:
        self.idle = None
        if self.transport is not None and self.cycle is None:
            self.transport.close()

    def _disarm(self, *, idle: bool = False, deadline: bool = False) -> None:
        if idle and self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if deadline and self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None


class _Cycle:
    """One request and its answer: the ASGI ``receive`` and ``send`` of the app's call."""

    def __init__(self, connection: _Connection, scope: Scope) -> None:
        self.connection = connection
        self.scope = scope
        self.body: list[bytes] = []
        self.buffered = 0
        self.body_complete = False
        self.body_given = False  # the last http.request message went to the app
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._start: Message | None = None
        self._woken: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._woken is not None and not self._woken.done():
            self._woken.set_result(None)

    async def run(self) -> None:
        try:
            await self.connection.server.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("%s %s: the app failed", self.scope["method"], self.scope["path"][:100])
            if not self.response_started and not self.disconnected:
                await self._answer_500()
            else:
                self.connection.reset()
            return
        if self.response_complete or self.disconnected:
            return
        if not self.response_started:
            # An app that returns without answering a live connection: a fault of ours.
            log.error(
                "%s %s: the app gave no answer", self.scope["method"], self.scope["path"][:100]
            )
            await self._answer_500()
        else:
            self.connection.reset()  # an answer left half-written cannot be finished

    async def _answer_500(self) -> None:
        self._start = None  # a head the app gave but never sent out is replaced
        with contextlib.suppress(OSError):
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-length", b"0"), _CLOSE],
                }
            )
            await self.send({"type": "http.response.body", "body": b""})

    async def receive(self) -> Message:
        connection = self.connection
        if connection.h11.they_are_waiting_for_100_continue and connection.transport is not None:
            connection.transport.write(
                connection.h11.send(h11.InformationalResponse(status_code=100, headers=[]))
            )
        while True:
            if self.disconnected:
                return {"type": "http.disconnect"}
            if self.body or (self.body_complete and not self.body_given):
                data = b"".join(self.body)
                self.body.clear()
                self.buffered = 0
                self.body_given = self.body_complete
                more = not self.body_complete
                message = {"type": "http.request", "body": data, "more_body": more}
                connection.body_read()  # may take in more of the body: the next call's
                return message
            if self.body_given and self.response_complete:
                return {"type": "http.disconnect"}
            self._woken = connection.loop.create_future()
            try:
                await self._woken
            finally:
                self._woken = None

    async def send(self, message: Message) -> None:
        connection = self.connection
        transport = connection.transport
        if self.disconnected or transport is None or transport.is_closing():
            return  # the client is gone: nothing to send it
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started or self._start is not None:
                raise RuntimeError("http.response.start sent twice")
            self._start = message
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if self.response_complete:
            raise RuntimeError("http.response.body after the answer was complete")
        output = b""
        if not self.response_started:
            if self._start is None:
                raise RuntimeError("http.response.body before http.response.start")
            self.response_started = True
            headers = list(self._start.get("headers", ()))
            if connection.h11.their_state is not h11.DONE and _CLOSE not in headers:
                # The app answers before the body is all in (413, 408): the rest will not
                # be read, so this connection cannot carry another request.
                headers.append(_CLOSE)
            status = self._start["status"]
            output += connection.h11.send(
                h11.Response(
                    status_code=status,
                    headers=headers,
                    reason=http.HTTPStatus(status).phrase.encode(),
                )
            )
        body = message.get("body", b"")
        if body and self.scope["method"] != "HEAD":  # HEAD: the head alone, as HTTP says
            output += connection.h11.send(h11.Data(data=body))
        more = message.get("more_body", False)
        if not more:
            output += connection.h11.send(h11.EndOfMessage())
        transport.write(output)
        if connection.writable is not None:
            await asyncio.shield(connection.writable)
        if not more:
            self.response_complete = True
            self.wake()
            if not self.disconnected:
                connection.response_complete()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), not yet listening.

    Raises ``OSError`` (``socket.gaierror`` for a host that does not resolve); callers
    translate it into their own error, naming the address.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def reset_transport(transport: asyncio.BaseTransport) -> None:
    """Cut a connection with an RST, dropping whatever is still buffered either way."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    transport.abort()
