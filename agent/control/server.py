"""The agent's side of the control socket: serve requests, fan events out.

The server only transports and dispatches: each request line is read into its request
class (:mod:`agent.control.protocol`) and given to the method marked ``@handles`` for it,
from a table built once (the agent's methods, and the block-rule operations of
:mod:`agent.control.block_rules`); answers and events are written through the same schema,
so a handler that answers the wrong shape is an internal error, never a line the client
misreads. A client is a local user of the
agent's group, but a buggy or hostile one must not cost the agent its memory or an SMS
its minute, so every client is bounded (the figures are in docs/bounds.md):

- at most ``max_clients`` connections; one more is told so and closed;
- a request line of at most ``MAX_REQUEST`` bytes, nested at most ``MAX_DEPTH`` deep;
  a longer line is answered with an error and the connection closed;
- one request at a time per connection: the next line is not read before the answer is
  written, so a client that floods requests only fills its own socket;
- ``max_working`` requests in the handler at once, all clients together (the rest wait
  their turn, first come first served): what clients can make the agent's threads and
  store do at a time is bounded however many there are;
- the answers waiting to be read: the transport buffers ``OUTPUT_BUFFER`` bytes, then the
  server waits for the client to read; a client that reads nothing for ``send_timeout``
  seconds is cut off (the buffer is dropped with it);
- events go through a bounded queue per subscriber: a stalled dashboard is told it
  overflowed and re-reads, and one that reads nothing for ``send_timeout`` is cut off.

Each connection has its own task, so a slow operation blocks nobody else; expensive
answers the handler shares between clients (:class:`Coalesced`), so that no number of
requests makes the agent's store do more than one snapshot at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from agent.control.protocol import (
    MAX_REQUEST,
    SUBSCRIBER_QUEUE,
    EventKind,
    Request,
    SharedResult,
    Subscribe,
    encode_answer,
    encode_event,
    encode_refusal,
    handler_table,
    parse_request,
)
from agent.errors import ControlError, SimedgeError
from agent.logs import LogLimiter

log = logging.getLogger("simedge.control")

T = TypeVar("T")

MAX_CLIENTS = 16  # a dashboard takes 2 connections, a CLI command 1
# Requests being handled at once, all clients together: heavier reads run in the loop's
# pool for blocking calls (IO_THREADS in agent/cli/run.py), which hot-plug polling needs too.
MAX_WORKING = 4
OUTPUT_BUFFER = 256 * 1024  # bytes of answers buffered per client before waiting for it
SEND_TIMEOUT = 10.0  # seconds a client may leave its answers unread before it is cut off
# After a refusal that closes the connection, what the client still sends is read and
# dropped for this long: closing a unix socket with unread input resets it, and the
# client would see "connection reset" instead of the reason.
REFUSAL_LINGER = 1.0


class ControlServer:
    """A unix-socket JSON-lines server; ``publish`` sends an event to every subscriber.

    ``handlers`` are objects whose methods are marked ``@handles(SomeRequest)``; a handler
    refuses by raising ControlError (or any SimedgeError). An operation none of them
    handles is refused as such (``tests/test_layering.py`` checks the agent handles all)."""

    def __init__(
        self,
        path: Path,
        *handlers: object,
        mode: int = 0o660,
        max_clients: int = MAX_CLIENTS,
        max_working: int = MAX_WORKING,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        self.path = path
        self._handlers = handler_table(*handlers)
        self._shared = SharedResult()
        self.mode = mode
        self.max_clients = max_clients
        self._working = asyncio.Semaphore(max_working)
        self.send_timeout = send_timeout
        self.cut_off = 0  # clients disconnected for not reading their answers
        # A client can repeat what makes these lines as fast as it likes.
        self._log = LogLimiter(log)
        self._server: asyncio.Server | None = None
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def clients(self) -> int:
        """Connections open now: what ``max_clients`` bounds."""
        return len(self._connections)

    @property
    def buffered(self) -> int:
        """Bytes of answers and events written but not yet taken by clients, all together."""
        return sum(w.transport.get_write_buffer_size() for w in self._connections.values())

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by a killed agent
        self._server = await asyncio.start_unix_server(
            self._serve_connection, path=str(self.path), limit=MAX_REQUEST
        )
        os.chmod(self.path, self.mode)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for queue in self._subscribers:
                _offer(queue, None)
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def publish(self, kind: EventKind, data: Any = None) -> None:
        """Queue an event for every subscriber; never waits. TypeError when ``data`` is not
        what the schema says this kind carries."""
        if not self._subscribers:
            return
        line = encode_event(kind, data)
        for queue in self._subscribers:
            _offer(queue, line)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        writer.transport.set_write_buffer_limits(high=OUTPUT_BUFFER)
        if len(self._connections) >= self.max_clients:
            await _refuse(
                reader, writer, f"too many control clients ({self.max_clients}); try later"
            )
            return
        self._connections[task] = writer
        try:
            await self._serve_requests(reader, writer)
        except (ConnectionError, BrokenPipeError):
            pass
        except TimeoutError:
            self.cut_off += 1
            self._log.warning(
                "clients disconnected (answers unread)",
                str(self.path),
                "control: a client left its answers unread for %.0f s: disconnected",
                self.send_timeout,
            )
        except asyncio.CancelledError:
            # stop() cancels connections; asyncio's stream server would log the
            # cancellation of its callback task as an error on Python 3.11.
            pass
        finally:
            del self._connections[task]
            # abort, not close: what the client left unread is dropped now, not kept
            # until it reads (it may never).
            writer.transport.abort()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                await _refuse(
                    reader, writer, f"request line over {MAX_REQUEST:,} bytes: disconnected"
                )
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                request_id, request = parse_request(line)
            except ControlError as exc:
                _write(writer, encode_refusal(None, str(exc)))
            else:
                if isinstance(request, Subscribe):  # the server's own: the connection turns
                    await self._stream_events(writer, request_id)
                    return
                _write(writer, await self._answer(request_id, request))
            await self._drain(writer)

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        """Wait while more than OUTPUT_BUFFER bytes are unread; TimeoutError after
        ``send_timeout`` seconds of that."""
        async with asyncio.timeout(self.send_timeout):
            await writer.drain()

    async def _answer(self, request_id: Any, request: Request[Any]) -> bytes:
        handler = self._handlers.get(request.OP)
        if handler is None:
            return encode_refusal(request_id, f"{request.OP} is not handled by this agent")
        try:
            async with self._working:
                result = await handler(request)
            return encode_answer(request_id, request, result, self._shared)
        except SimedgeError as exc:
            return encode_refusal(request_id, str(exc))
        except Exception as exc:  # a handler bug must not cut the dashboard off
            op = request.OP
            self._log.error(
                "failed requests", f"op {op}", "control op %s failed", op, exc_info=True
            )
            return encode_refusal(request_id, f"internal error: {exc!r}")

    async def _stream_events(self, writer: asyncio.StreamWriter, request_id: Any) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        # Registered before the answer: every event published after the client read "ok"
        # reaches it, so a snapshot taken then misses nothing.
        self._subscribers.add(queue)
        try:
            _write(writer, encode_answer(request_id, Subscribe(), None))
            await self._drain(writer)
            while (line := await queue.get()) is not None:
                _write(writer, line)
                await self._drain(writer)
        finally:
            self._subscribers.discard(queue)


class Coalesced(Generic[T]):
    """One computation shared by every caller that asks while it is due.

    ``await get()`` returns a result computed after the call (never an older one, so a
    snapshot asked after an event shows it), but however many callers ask, at most one
    computation runs at a time and they start at least ``min_interval`` seconds apart:
    callers that ask meanwhile share the next one.
    """

    def __init__(
        self,
        compute: Callable[[], Awaitable[T]],
        *,
        min_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._min_interval = min_interval
        self._clock = clock
        self._next: asyncio.Future[T] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._last_start = float("-inf")
        self.computations = 0

    async def get(self) -> T:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            # Retrieved here so that a result nobody waits for any more (its callers
            # left) is not reported as "never retrieved".
            self._next.add_done_callback(_retrieve)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="coalesced")
        # shield: a caller that leaves must not cancel what the others wait for.
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        while (due := self._next) is not None:
            wait = self._last_start + self._min_interval - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)  # the spacing is the point, not a wait for a state
            self._next = None  # callers from now on wait for the computation after this
            self._last_start = self._clock()
            self.computations += 1
            try:
                due.set_result(await self._compute())
            except asyncio.CancelledError:
                due.cancel()
                raise
            except Exception as exc:
                due.set_exception(exc)


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    """``writer.write``, but a client already gone is a ConnectionResetError, as the next
    drain would say: asyncio's transports drop a write after the connection is lost,
    uvloop's (the agent's loop) raise RuntimeError."""
    if writer.transport.is_closing():
        raise ConnectionResetError("the control client is gone")
    writer.write(data)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, error: str) -> None:
    """Say ``error``, end our side, and drop what the client still sends for at most
    REFUSAL_LINGER seconds; the caller closes."""
    with contextlib.suppress(TimeoutError, ConnectionError, BrokenPipeError):
        _write(writer, encode_refusal(None, error))
        async with asyncio.timeout(REFUSAL_LINGER):
            await writer.drain()
            writer.write_eof()
            while await reader.read(MAX_REQUEST):
                pass
    writer.transport.abort()


def _offer(queue: asyncio.Queue[bytes | None], line: bytes | None) -> None:
    """Put without waiting; a full queue is emptied and told it overflowed."""
    try:
        queue.put_nowait(line)
    except asyncio.QueueFull:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(encode_event(EventKind.OVERFLOW))
        if line is None:
            queue.put_nowait(None)
