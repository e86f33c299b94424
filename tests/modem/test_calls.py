"""Incoming calls on a real worker over emulated modems: recorded with the caller, then
rejected (AT+CHUP, or ATH where the module refuses it); forwarded when asked; a flood of
calls neither stalls SMS nor grows what is kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agent.emulate.modems.hub import Hub
from agent.modem.calls import CallSettings
from agent.modem.worker import ModemWorker
from agent.store import Store, queries
from tests.modem.conftest import (
    RecordingSink,
    StartHub,
    message_count,
    ready,
    running,
    settled,
)


class CallEvents:
    """The emulated modems' call log (ringing, rejected, given up), awaitable."""

    def __init__(self, hub: Hub) -> None:
        self.log: list[tuple[int, str, str]] = []
        self._changed = asyncio.Event()
        for slot in hub.slots:
            slot.modem.on_call = self._hook(slot.index, slot.modem.on_call)

    def _hook(self, index: int, original: Callable[..., None]) -> Callable[..., None]:
        def hook(kind: str, call_id: str, **details: Any) -> None:
            original(kind, call_id, **details)
            self.log.append((index, kind, call_id))
            self._changed.set()

        return hook

    async def until(self, kind: str, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while sum(1 for _, k, _ in self.log if k == kind) < count:
                self._changed.clear()
                await self._changed.wait()


async def calls_in_store(store: Store, worker: ModemWorker) -> list[Any]:
    """The calls kept, once the worker has finished with what it was handed."""
    await settled(worker)
    return await store.read(queries.incoming_calls)


@pytest.mark.parametrize(("profile", "hangup"), [("ec25", "AT+CHUP"), ("sim800", "ATH")])
async def test_a_call_is_recorded_with_its_caller_then_rejected(
    start_hub: StartHub, store: Store, profile: str, hangup: str
) -> None:
    hub = await start_hub(count=1, profile=profile, ring_interval=0.3)
    events = CallEvents(hub)
    async with running(hub, 0, store, call_recorder=store) as (worker, watch, _):
        await watch.until(ready)
        call_id = hub.call(0, "+79031234567", give_up_after=30)
        await events.until("rejected", 1)
        (call,) = await calls_in_store(store, worker)
    assert (call.caller, call.rejected_with, call.message_id) == ("+79031234567", hangup, None)
    assert call.iccid == hub.slots[0].modem.sim.iccid
    rings = [kind for _, kind, cid in events.log if cid == call_id]
    assert rings == ["ringing", "rejected"]  # never left to give up
    assert await message_count(store) == 0  # not forwarded unless asked


async def test_forwarded_calls_go_through_the_outbox(start_hub: StartHub, store: Store) -> None:
    hub = await start_hub(count=1, profile="ec25", ring_interval=0.3)
    events = CallEvents(hub)
    forward = CallSettings(forward_template="Call from {caller}")
    options = {"call_recorder": store, "call_settings": forward}
    async with running(hub, 0, store, **options) as (worker, watch, _):
        await watch.until(ready)
        hub.call(0, "+79031234567")
        await events.until("rejected", 1)
        (call,) = await calls_in_store(store, worker)
    (due,) = await store.due_messages(call.at + 1, 10)
    assert (due.id, due.sender, due.text) == (
        call.message_id,
        "+79031234567",
        "Call from +79031234567",
    )


async def test_a_flood_of_calls_keeps_sms_flowing_and_records_within_the_bound(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(count=1, profile="ec25", ring_interval=0.05)
    events = CallEvents(hub)
    sink = RecordingSink(store)
    bound = CallSettings(records_per_minute=5, same_call_within=0.1)
    async with running(hub, 0, sink, call_recorder=store, call_settings=bound) as (
        worker,
        watch,
        _,
    ):
        await watch.until(ready)
        calls = 12
        for number in range(calls):
            hub.call(0, f"+7903123450{number % 10}")
            if number == calls // 2:
                hub.inject(0, "+79161234567", "an SMS in the middle of the flood")
                loop = asyncio.get_running_loop()
                injected_at = loop.time()
            await events.until("rejected", number + 1)
        (stored,) = await sink.until(1)
        await settled(worker)  # the last rejection's bookkeeping is done
        stored_after = asyncio.get_running_loop().time() - injected_at
        handler = worker._calls  # the bound is the handler's own count
        assert handler.calls_seen == calls
        assert handler.calls_not_recorded == calls - 5
    assert stored.message_id is not None
    assert stored_after < 2.0
    assert len(await store.read(queries.incoming_calls)) == 5
    assert [kind for _, kind, _ in events.log].count("given up") == 0
