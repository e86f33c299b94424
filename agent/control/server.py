"""The agent's side of the control socket: serve requests, fan events out.

The server only transports: what each operation does is the handler's business
(:class:`Handler`, implemented by the supervisor). Two rules keep the agent safe from its
clients: a request is answered by its own task, so a slow operation blocks nobody else;
and events go through a bounded queue per subscriber, so a stalled dashboard on a slow
SSH link can never hold the agent back (it is told it overflowed and re-reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from agent.control.protocol import MAX_LINE, SUBSCRIBER_QUEUE, encode, parse_request
from agent.errors import ControlError, SimedgeError

log = logging.getLogger("simedge.control")


class Handler(Protocol):
    async def handle(self, op: str, arguments: dict[str, Any]) -> Any:
        """Carry out one operation; raise ControlError (or any SimedgeError) to refuse."""
        ...


class ControlServer:
    """A unix-socket JSON-lines server; ``publish`` sends an event to every subscriber."""

    def __init__(self, path: Path, handler: Handler, *, mode: int = 0o660) -> None:
        self.path = path
        self.handler = handler
        self.mode = mode
        self._server: asyncio.Server | None = None
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by a killed agent
        self._server = await asyncio.start_unix_server(
            self._serve_connection, path=str(self.path), limit=MAX_LINE
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

    def publish(self, kind: str, data: Any) -> None:
        """Queue an event for every subscriber; never waits."""
        if not self._subscribers:
            return
        line = encode({"event": kind, "data": data})
        for queue in self._subscribers:
            _offer(queue, line)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        write_lock = asyncio.Lock()
        requests: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(
                        writer,
                        write_lock,
                        {"id": None, "ok": False, "error": f"request over {MAX_LINE} bytes"},
                    )
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    request_id, op, arguments = parse_request(line)
                except ControlError as exc:
                    await _send(writer, write_lock, {"id": None, "ok": False, "error": str(exc)})
                    continue
                if op == "subscribe":
                    await self._stream_events(writer, write_lock, request_id)
                    break
                request = asyncio.create_task(
                    self._answer(writer, write_lock, request_id, op, arguments)
                )
                requests.add(request)
                request.add_done_callback(requests.discard)
        except (ConnectionError, BrokenPipeError):
            pass
        except asyncio.CancelledError:
            # stop() cancels connections; asyncio's stream server would log the
            # cancellation of its callback task as an error on Python 3.11.
            pass
        finally:
            for request in requests:
                request.cancel()
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        lock: asyncio.Lock,
        request_id: Any,
        op: str,
        arguments: dict[str, Any],
    ) -> None:
        try:
            result = await self.handler.handle(op, arguments)
            answer = {"id": request_id, "ok": True, "result": result}
        except SimedgeError as exc:
            answer = {"id": request_id, "ok": False, "error": str(exc)}
        except Exception as exc:  # a handler bug must not cut the dashboard off
            log.exception("control op %s failed", op)
            answer = {"id": request_id, "ok": False, "error": f"internal error: {exc!r}"}
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await _send(writer, lock, answer)

    async def _stream_events(
        self, writer: asyncio.StreamWriter, lock: asyncio.Lock, request_id: Any
    ) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        # Registered before the answer: every event published after the client read "ok"
        # reaches it, so a snapshot taken then misses nothing.
        self._subscribers.add(queue)
        try:
            await _send(writer, lock, {"id": request_id, "ok": True, "result": None})
            while (line := await queue.get()) is not None:
                async with lock:
                    writer.write(line)
                    await writer.drain()
        finally:
            self._subscribers.discard(queue)


def _offer(queue: asyncio.Queue[bytes | None], line: bytes | None) -> None:
    """Put without waiting; a full queue is emptied and told it overflowed."""
    try:
        queue.put_nowait(line)
    except asyncio.QueueFull:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(encode({"event": "overflow", "data": None}))
        if line is None:
            queue.put_nowait(None)


async def _send(writer: asyncio.StreamWriter, lock: asyncio.Lock, message: dict[str, Any]) -> None:
    async with lock:
        writer.write(encode(message))
        await writer.drain()
