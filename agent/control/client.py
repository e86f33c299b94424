"""The client side of the control socket, for the dashboard and the CLI.

:class:`ControlClient` keeps one connection for requests; :meth:`ControlClient.events`
opens a second one for the event stream, so that a burst of events never delays an
answer. Every failure (agent down, socket missing, refusal) is a ControlError that says
what happened in words a person on site understands.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.control.protocol import MAX_LINE, encode
from agent.errors import AgentNotRunning, ControlError


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

    async def request(self, op: str, **arguments: Any) -> Any:
        """Send one request and return its result, or raise ControlError with the refusal."""
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
            answer = json.loads(line)
            if not answer.get("ok"):
                raise ControlError(answer.get("error") or f"{op} refused")
            return answer.get("result")

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Live events until the agent goes away (then ControlError).

        The first item is ``{"event": "subscribed"}``: from then on no event is missed, so
        that is the moment to take a snapshot."""
        reader, writer = await self._open()
        try:
            writer.write(encode({"id": 0, "op": "subscribe"}))
            await writer.drain()
            first = await reader.readline()
            if not first or not json.loads(first).get("ok"):
                raise ControlError("the agent refused the event stream")
            yield {"event": "subscribed", "data": None}
            while line := await reader.readline():
                yield json.loads(line)
            raise ControlError("the agent closed the event stream")
        except (ConnectionError, ValueError) as exc:
            raise ControlError(f"event stream lost: {exc}") from exc
        finally:
            writer.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None


def call(path: str | Path, op: str, **arguments: Any) -> Any:
    """One request from synchronous code (the CLI)."""

    async def once() -> Any:
        async with ControlClient(path) as client:
            return await client.request(op, **arguments)

    return asyncio.run(once())
