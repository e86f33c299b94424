"""Fixtures for the modem tests: emulated modems served from the test's own event loop,
and a scripted peer on a raw pty for exchanges the emulator cannot time on purpose
(a URC cut into a response, a late answer, binary noise)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.emulate.modems import Hub
from agent.modem.fleet import Fleet
from agent.modem.hotplug import PortWatcher
from agent.modem.own_number import MemoryNumberBook
from agent.modem.worker import Backoff, ModemWorker, PduSink, WorkerSettings
from agent.status import ModemState, ModemStatus
from agent.store import Store

Reply = bytes | Callable[[str], bytes] | None


class ScriptedPeer:
    """The far end of a real pty: answers each command line by ``script[line]``
    (bytes, a function of the line, or None for silence) and records what it got."""

    def __init__(self, script: dict[str, Reply]) -> None:
        self.script = script
        self.lines: list[str] = []
        self._buffer = b""
        self._got = asyncio.Condition()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.device = os.ttyname(self.slave)
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._buffer += os.read(self.master, 4096)
        while b"\r" in self._buffer:
            raw, _, self._buffer = self._buffer.partition(b"\r")
            line = raw.decode().strip()
            if not line:
                continue
            self.lines.append(line)
            reply = self.script.get(line, b"\r\nOK\r\n")
            if callable(reply):
                reply = reply(line)
            if reply:
                self.send(reply)
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._got:
            self._got.notify_all()

    async def received(self, count: int) -> list[str]:
        """Wait until ``count`` command lines have arrived."""
        async with self._got:
            await self._got.wait_for(lambda: len(self.lines) >= count)
        return self.lines

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
async def scripted_peer() -> AsyncIterator[Callable[[dict[str, Reply]], ScriptedPeer]]:
    peers: list[ScriptedPeer] = []

    def make(script: dict[str, Reply]) -> ScriptedPeer:
        peer = ScriptedPeer(script)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


StartHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def start_hub(tmp_path: Path) -> AsyncIterator[StartHub]:
    """Factory: ``await start_hub(count=2, profile="ec25")``: a Hub in this event loop,
    with test timings (noise off, quick resets and USSD)."""
    hubs: list[Hub] = []

    async def start(**options: Any) -> Hub:
        options.setdefault("count", 1)
        options.setdefault("noise_interval", 0)
        options.setdefault("reset_delay", 0.05)
        options.setdefault("ussd_delay", 0.05)
        options.setdefault("slow_delay", 0.5)
        hub = Hub(tmp_path / f"hub{len(hubs)}", **options)
        await hub.start()
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        await hub.stop()


def at_link(hub: Hub, index: int = 0) -> str:
    """The first AT port of modem ``index`` (the EC25's if2)."""
    slot = hub.slots[index]
    return next(str(port.link) for port in slot.ports if port.spec.role == "at")


class StatusWatch:
    """The ``on_status`` callback of a worker: keeps every snapshot and lets a test wait
    for one that satisfies a condition."""

    def __init__(self) -> None:
        self.history: list[ModemStatus] = []
        self._changed = asyncio.Event()

    def __call__(self, status: ModemStatus) -> None:
        self.history.append(status)
        self._changed.set()

    @property
    def latest(self) -> ModemStatus | None:
        return self.history[-1] if self.history else None

    async def until(
        self, condition: Callable[[ModemStatus], bool], within: float = 5.0
    ) -> ModemStatus:
        async with asyncio.timeout(within):
            while self.latest is None or not condition(self.latest):
                self._changed.clear()
                await self._changed.wait()
        assert self.latest is not None
        return self.latest

    async def next(self, within: float = 5.0) -> ModemStatus:
        """The next snapshot the worker publishes."""
        self._changed.clear()
        async with asyncio.timeout(within):
            await self._changed.wait()
        assert self.latest is not None
        return self.latest


class RecordingSink:
    """A PduSink in front of the real store: records each hand-over and lets a test wait
    for a number of them; ``after_ingest`` runs once the store returned (crash tests)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[dict[str, Any]] = []
        self.results: list[Any] = []
        self.after_ingest: Callable[[], None] | None = None
        self._changed = asyncio.Event()

    async def ingest_pdu(self, **fields: Any) -> Any:
        self.calls.append(fields)
        result = await self.store.ingest_pdu(**fields)
        self.results.append(result)
        self._changed.set()
        if self.after_ingest is not None:
            self.after_ingest()
        return result

    async def until(self, count: int, within: float = 5.0) -> list[Any]:
        async with asyncio.timeout(within):
            while len(self.results) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.results


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "simedge.db")
    yield opened
    await opened.close()


FAST = WorkerSettings(
    command_timeout=0.5,
    health_interval=0.5,
    timeouts_before_reset=2,
    boot_settle=0.05,
    reset_wait=1.0,
    disk_full_retry=0.2,
    ussd_answer_within=2.0,
    failed_backoff=Backoff(initial=0.2, growth=2.0, cap=0.5),
)
"""Worker settings for tests: short timeouts and intervals, so faults resolve in a second."""


async def message_count(store: Store) -> int:
    return (await store.table_counts())["message"]


@asynccontextmanager
async def running(
    hub: Hub,
    index: int,
    sink: PduSink,
    *,
    settings: WorkerSettings = FAST,
    **options: Any,
) -> AsyncIterator[tuple[ModemWorker, StatusWatch, asyncio.Task[Any]]]:
    """A worker on modem ``index``'s AT port, running until the block ends."""
    watch = StatusWatch()
    worker = ModemWorker(
        at_link(hub, index),
        slot=hub.slots[index].usb_path,
        sink=sink,
        on_status=watch,
        settings=settings,
        **options,
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker, watch, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settled(worker: ModemWorker) -> None:
    """Wait until the worker has handled all it was given (the delete after a store)."""
    async with asyncio.timeout(5):
        await worker.wait_idle()


def ready(status: Any) -> bool:
    return status.state is ModemState.READY


class _EmulatorEvents:
    """Chains onto each emulated modem's event hook so a test can await the emulator's
    own log (stored, acked, ...) instead of polling it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.changed = asyncio.Event()
        for slot in hub.slots:
            slot.modem.on_event = self._chain(slot.modem.on_event)

    def _chain(self, original: Callable[..., None]) -> Callable[..., None]:
        def chained(kind: str, item: Any, **details: Any) -> None:
            original(kind, item, **details)
            self.changed.set()

        return chained

    def count(self, kind: str) -> int:
        return len([event for event in self.hub.events if event["kind"] == kind])


_WATCHES: weakref.WeakKeyDictionary[Hub, _EmulatorEvents] = weakref.WeakKeyDictionary()


async def emulator_events(hub: Hub, kind: str, count: int, within: float = 5.0) -> None:
    """Wait until the emulator logged ``count`` events of ``kind``."""
    watch = _WATCHES.get(hub) or _WATCHES.setdefault(hub, _EmulatorEvents(hub))
    async with asyncio.timeout(within):
        while watch.count(kind) < count:
            watch.changed.clear()
            await watch.changed.wait()


def stored_on_modem(hub: Hub, index: int) -> int:
    sim = hub.slots[index].modem.sim
    return sim.storage.used if sim else 0


class FleetView:
    """A running Fleet on a hub's ports, built as the agent builds it, and every status it
    published: ``latest`` per slot, ``history`` with the loop time of each."""

    def __init__(self, hub: Hub, store: Store, **options: Any) -> None:
        self.latest: dict[str, ModemStatus] = {}
        self.history: list[tuple[float, ModemStatus]] = []
        self._changed = asyncio.Event()
        self.running: asyncio.Task[None] | None = None
        options.setdefault("probe_timeout", 0.3)
        self.watcher = PortWatcher(
            [f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "x"
        )
        self.fleet = Fleet(
            watcher=self.watcher,
            store=store,
            settings=FAST,
            number_book=MemoryNumberBook(),
            ussd_recipes={},
            on_change=self._published,
            **options,
        )

    def _published(self, status: ModemStatus) -> None:
        self.history.append((asyncio.get_running_loop().time(), status))
        self.latest[status.slot] = status
        self._changed.set()

    def ready(self) -> int:
        return sum(status.state is ModemState.READY for status in self.latest.values())

    async def until(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def fleet_on(hub: Hub, store: Store, **options: Any) -> AsyncIterator[FleetView]:
    """``FleetView`` of a Fleet that runs (its task in ``view.running``) for the block."""
    view = FleetView(hub, store, **options)
    view.running = running = asyncio.create_task(view.fleet.run())
    try:
        yield view
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
