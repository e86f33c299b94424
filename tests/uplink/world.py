"""A small real world for the uplink loops: the OnlineSim stand-in on 127.0.0.1, a store
in a real SQLite file, a client, and modem snapshots the test edits.

Test modules import the ``world`` fixture by name. Policies are tiny so that back-off and probes
take milliseconds; tests wait on the stand-in's state with ``wait_until`` inside
``asyncio.timeout``, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest_asyncio

from agent.emulate.onlinesim import OnlineSimStandIn, StandInState
from agent.protocol.pdu import encode_deliver
from agent.status import ModemState, ModemStatus, SimState
from agent.store import Store
from agent.uplink import OnlineSimClient, UplinkSettings, account_probe, transient_backoff

KEY = "sk-test-0123456789abcdef"
MOSCOW = timezone(timedelta(hours=3))
SCTS = datetime(2026, 3, 1, 15, 0, 5, tzinfo=MOSCOW)
WAIT = 10.0  # seconds any single wait may take before the test fails

FAST = transient_backoff(initial=0.01, cap=0.05)
PROBE = account_probe(interval=0.05, jitter=0.0)


def sim_status(slot: str, iccid: str, number: str | None, **changes: Any) -> ModemStatus:
    """A live modem snapshot (ready, registered, Russian IMSI) unless ``changes`` say not."""
    status = ModemStatus(
        slot=slot,
        state=ModemState.READY,
        sim_state=SimState.READY,
        registered=True,
        iccid=iccid,
        imsi="250011234567890",
        number=number,
        operator="25001",
    )
    return replace(status, **changes)


class World:
    """The stand-in, the store, a client and the modems; ``live()`` for NumbersSync."""

    def __init__(self, standin: OnlineSimStandIn, store: Store, client: OnlineSimClient) -> None:
        self.standin = standin
        self.store = store
        self.client = client
        self.modems: dict[str, ModemStatus] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pdu_index = 0

    def live(self) -> list[ModemStatus]:
        return list(self.modems.values())

    def start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a loop (pump, numbers, take-off) until the test ends."""
        task = asyncio.create_task(coroutine)
        self._tasks.append(task)
        return task

    async def stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def add_sim(self, iccid: str, number: str | None, slot: str = "usb-1.1") -> None:
        await self.store.upsert_sim(
            iccid, imsi="250011234567890", number=number, number_source="manual", slot=slot
        )

    async def receive(
        self, iccid: str, text: str, sender: str = "VKcom", slot: str = "usb-1.1"
    ) -> int:
        """One SMS committed to the store as a modem session would; returns its id."""
        self._pdu_index += 1
        stamp = SCTS + timedelta(seconds=self._pdu_index)
        (pdu,) = encode_deliver(text, sender, timestamp=stamp)
        result = await self.store.ingest_pdu(
            iccid=iccid,
            imei="860000000000001",
            slot=slot,
            storage="SM",
            index=self._pdu_index,
            pdu_hex=pdu.hex(),
            read_at=datetime.now(UTC),
        )
        assert result.message_id is not None
        return result.message_id

    async def until(self, condition: Callable[[StandInState], bool]) -> None:
        async with asyncio.timeout(WAIT):
            await self.standin.wait_until(condition)

    def requests(self, path_end: str) -> list[Any]:
        """The stand-in's log of requests to one API method, oldest first."""
        return [r for r in self.standin.state.requests if r.path.endswith(path_end)]


class Outcomes:
    """What the pump did with each message, in order; tests wait on it (no sleeping).
    "accepted" (OnlineSim has it, its "sent" not committed yet) is kept apart in
    ``accepted``: the outcomes proper follow it."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.accepted: list[int] = []
        self._changed = asyncio.Event()

    def __call__(self, message_id: int, outcome: str) -> None:
        if outcome == "accepted":
            self.accepted.append(message_id)
        else:
            self.seen.append((message_id, outcome))
        self._changed.set()

    def of(self, message_id: int) -> list[str]:
        return [outcome for seen_id, outcome in self.seen if seen_id == message_id]

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    standin = OnlineSimStandIn(key=KEY)
    await standin.start("127.0.0.1", 0)
    store = await Store.open(tmp_path / "data" / "simedge.db")
    client = OnlineSimClient(
        UplinkSettings(
            base_url=f"{standin.url}/api/resellers",
            api_key=KEY,
            connect_timeout=2.0,
            read_timeout=0.5,
            write_timeout=2.0,
            pool_timeout=2.0,
        )
    )
    built = World(standin, store, client)
    try:
        yield built
    finally:
        await built.stop_tasks()
        await client.aclose()
        await built.store.close()  # the test may have reopened it
        await standin.stop()
