"""The client side of the control socket, for the dashboard and the CLI.

:class:`ControlClient` keeps one connection for requests; :meth:`ControlClient.subscribe`
opens a second one for the event stream, so that a burst of events never delays an
answer. :meth:`ControlClient.call` takes a request of :mod:`agent.control.protocol` and
returns its result typed; :meth:`ControlClient.request` is the same exchange untyped
(tools and tests that speak the wire form, a wrong one included). Every failure (agent
down, socket missing, refusal) is a ControlError that says what happened in words a
person on site understands.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from agent.control.protocol import (
    MAX_LINE,
    Event,
    EventKind,
    Request,
    Subscribe,
    encode,
    encode_request,
    parse_event,
    read_result,
)
from agent.errors import AgentNotRunning, ControlError

R = TypeVar("R")
log = logging.getLogger("simedge.control")


class ControlClient:
    def __init__(self, path: str | Path, *, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.open_unix_connection(str(self.path), limit=MAX_LINE)
        except FileNotFoundError as exc:
            raise AgentNotRunning(f"the agent is not running (no socket at {self.path})") from exc
        except ConnectionRefusedError as exc:
            raise AgentNotRunning(f"the agent is not running (nobody on {self.path})") from exc
        except PermissionError as exc:
            raise ControlError(
                f"no permission to use {self.path}: is this user in the agent's group?"
            ) from exc
        except (TimeoutError, OSError) as exc:
            raise ControlError(f"cannot reach the agent on {self.path}: {exc}") from exc

    async def call(self, request: Request[R]) -> R:
        """Send one request and return its result typed, or raise ControlError with the
        refusal (or with what is wrong in an answer the schema does not allow)."""
        return read_result(request, await self._exchange(str(request.OP), request.arguments()))

    async def request(self, op: str, **arguments: Any) -> Any:
        """The untyped exchange: the ``result`` as JSON; ControlError with a refusal."""
        answer = await self._exchange(op, arguments)
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else None
            raise ControlError(error or f"{op} refused")
        return answer.get("result")

    async def _exchange(self, op: str, arguments: dict[str, Any]) -> Any:
        """One request line out, its answer line back, parsed."""
        async with self._lock:
            if self._writer is None or self._writer.is_closing():
                self._reader, self._writer = await self._open()
            assert self._reader is not None
            request_id = next(self._ids)
            try:
                async with asyncio.timeout(self.timeout):
                    self._writer.write(encode({"id": request_id, "op": op, **arguments}))
                    await self._writer.drain()
                    line = await self._reader.readline()
            except (TimeoutError, ConnectionError, ValueError) as exc:
                await self.close()
                raise ControlError(f"the agent did not answer {op}: {exc or 'timeout'}") from exc
            if not line:
                await self.close()
                raise ControlError(f"the agent closed the connection during {op}")
            try:
                return json.loads(line)
            except ValueError as exc:
                raise ControlError(f"the agent's answer to {op} is not JSON: {exc}") from exc

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        """``async with client.subscribe() as events``: entered once the agent registered
        this subscriber, so a snapshot taken inside misses no event; then ``async for
        event in events`` until the agent goes away (ControlError)."""
        reader, writer = await self._open()
        try:
            try:
                writer.write(encode_request(0, Subscribe()))
                await writer.drain()
                first = await reader.readline()
                read_result(Subscribe(), json.loads(first) if first else None)
            except (ConnectionError, ValueError) as exc:
                raise ControlError(f"the agent refused the event stream: {exc}") from exc
            yield _events(reader)
        finally:
            writer.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None


async def _events(reader: asyncio.StreamReader) -> AsyncIterator[Event]:
    while True:
        try:
            line = await reader.readline()
        except (ConnectionError, ValueError) as exc:
            raise ControlError(f"event stream lost: {exc}") from exc
        if not line:
            raise ControlError("the agent closed the event stream")
        try:
            yield parse_event(line)
        except ControlError as exc:
            # An agent newer than this client, or a damaged line: something was missed,
            # which is what overflow says; the stream itself goes on.
            log.warning("unreadable event (%s): taken as an overflow", exc)
            yield Event(EventKind.OVERFLOW)


def call(path: str | Path, request: Request[R]) -> R:
    """One request from synchronous code (the CLI)."""

    async def once() -> R:
        async with ControlClient(path) as client:
            return await client.call(request)

    return asyncio.run(once())
