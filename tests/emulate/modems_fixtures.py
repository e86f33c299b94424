"""Shared helpers for the modem emulator's tests: a hub on its own thread, an AT port.

The hub runs its event loop on a background thread so that tests can talk to the ptys with
plain blocking pyserial, as the agent's users' tools (and gammu) do. Every wait is a read
with a deadline on the real port: no sleeps.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import serial

from agent.emulate.modems.hub import Hub

T = TypeVar("T")
FINAL = re.compile(rb"\r\n(OK|ERROR|\+CM[ES] ERROR: [^\r]*)\r\n")


class HubThread:
    """A Hub serving from a background event loop; ``call`` runs code on that loop."""

    def __init__(self, directory: Path, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hub = self._run(self._make(directory, options))

    async def _make(self, directory: Path, options: dict[str, Any]) -> Hub:
        hub = Hub(directory, **options)
        await hub.start()
        return hub

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def invoke() -> T:
            return function(*args, **kwargs)

        return self._run(invoke())

    def at_link(self, index: int, which: int = 0) -> str:
        """The symlink of the ``which``-th AT port of modem ``index``."""
        slot = self.hub.slots[index]
        links = [str(p.link) for p in slot.ports if p.spec.role == "at"]
        return links[which]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.call(lambda: [e for e in self.hub.events if e["kind"] == kind])

    def close(self) -> None:
        self._run(self.hub.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def modem_hub(tmp_path: Path) -> Iterator[Callable[..., HubThread]]:
    """Factory: ``modem_hub(count=2, profile="ec25")`` -> a started HubThread."""
    started: list[HubThread] = []

    def start(**options: Any) -> HubThread:
        options.setdefault("count", 1)
        options.setdefault("noise_interval", 0)
        directory = tmp_path / f"hub{len(started)}"
        hub = HubThread(directory, **options)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub.close()


class AtPort:
    """A host-side AT conversation over a real tty, with deadlines instead of sleeps."""

    def __init__(self, path: str) -> None:
        self.serial = serial.Serial(path, 115200, timeout=0.05)
        self.buffer = b""

    def close(self) -> None:
        self.serial.close()

    def read_until(self, done: Callable[[bytes], bool], timeout: float = 3.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not done(self.buffer):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {self.buffer!r}")
            self.buffer += self.serial.read(max(1, self.serial.in_waiting))
        return self.buffer

    def expect(self, pattern: bytes, timeout: float = 3.0) -> re.Match[bytes]:
        """Wait for ``pattern`` and consume the buffer up to the end of its match."""
        regex = re.compile(pattern)
        self.read_until(lambda data: regex.search(data) is not None, timeout)
        match = regex.search(self.buffer)
        assert match is not None
        self.buffer = self.buffer[match.end() :]
        return match

    def command(self, line: str, timeout: float = 3.0) -> str:
        """Send ``line``; everything up to and including the final result code (what
        follows, such as a URC, stays in the buffer for ``expect``)."""
        self.buffer = b""
        self.serial.write(line.encode() + b"\r")
        self.read_until(lambda data: FINAL.search(data) is not None, timeout)
        match = FINAL.search(self.buffer)
        assert match is not None
        text, self.buffer = self.buffer[: match.end()], self.buffer[match.end() :]
        return text.decode("latin-1")

    def sync(self, *, autobaud: bool) -> None:
        """Get an answer to ``AT``; an autobauding module swallows the first one."""
        self.serial.write(b"AT\r" * (2 if autobaud else 1))
        self.read_until(lambda data: b"\r\nOK\r\n" in data)
        self.buffer = self.buffer.split(b"\r\nOK\r\n", 1)[1]
