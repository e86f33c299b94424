"""Take-off against the stand-in's earnings table: marks, the two actions, swaps."""

from __future__ import annotations

import asyncio
import json

import pytest

from agent.status import UplinkCondition
from agent.store.models import Event, Sim
from agent.uplink.client import TakeOffItem
from agent.uplink.numbers import NumbersSync
from agent.uplink.policy import account_probe
from agent.uplink.state import UplinkSnapshot, UplinkTracker
from agent.uplink.takeoff import TakeOffMarks, TakeOffPoller
from tests.uplink.world import FAST, World, sim_status, world

__all__ = ["world"]

A, B, NEW = "8970101234567890001", "8970101234567890002", "8970101234567890009"
NUM_A, NUM_B = "+79161230001", "+79161230002"


async def started(world: World, *, offline: bool) -> tuple[NumbersSync, TakeOffPoller]:
    for iccid, slot in ((A, "usb-1.1"), (B, "usb-1.2")):
        await world.add_sim(iccid, None, slot=slot)
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, NUM_A)
    world.modems["usb-1.2"] = sim_status("usb-1.2", B, NUM_B)
    marks = TakeOffMarks(world.store)
    numbers = NumbersSync(
        world.client, world.store, world.live, policy=FAST, debounce=0.0,
        marks=marks, takeoff_offline=offline,
    )  # fmt: skip
    world.start(numbers.run())
    await world.until(lambda state: len(state.online) == 2)
    await numbers.resync()
    poller = TakeOffPoller(
        world.client, marks, numbers.holders, sum_rub=50, interval=3600,
        on_marked=numbers.notify_change,
    )  # fmt: skip
    world.standin.state.set_earnings({NUM_A: 75.5, NUM_B: 10})
    return numbers, poller


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "keep"])
async def test_listed_sims_are_marked_and_the_action_applies(world: World, offline: bool) -> None:
    numbers, poller = await started(world, offline=offline)
    listed = await poller.poll_once()
    assert [(item.number, item.sum) for item in listed] == [(NUM_A, 75.5)]
    row = Sim.get_by_id(A)
    assert (row.takeoff_sum, row.takeoff_at is not None) == (75.5, True)
    assert Sim.get_by_id(B).takeoff_sum is None
    (query,) = world.requests("takeOffNumbers")
    assert query.query["sum"] == "50"

    await numbers.resync()
    last = json.loads(world.requests("sendNumbersOnline")[-1].body)["number"]
    expected = {NUM_B} if offline else {NUM_A, NUM_B}
    assert {item["number"] for item in last} == expected


async def test_a_new_iccid_in_the_slot_clears_the_mark(world: World) -> None:
    numbers, poller = await started(world, offline=True)
    await poller.poll_once()
    await world.add_sim(NEW, None, slot="usb-1.1")
    world.modems["usb-1.1"] = sim_status("usb-1.1", NEW, "+79161230009")
    await numbers.resync()
    assert "+79161230009" in world.standin.state.online
    assert Sim.get_by_id(A).takeoff_done_at is not None
    assert Sim.get_by_id(NEW).takeoff_at is None
    # A second poll sends no ``date``: "date after number added" could hide a number
    # added before it (docs/uplink.md), so the query is the sum alone, every time.
    await poller.poll_once()
    assert [("date" in r.query, "sum" in r.query) for r in world.requests("takeOffNumbers")] == [
        (False, True),
        (False, True),
    ]


async def test_two_settles_at_once_close_a_swapped_mark_once(world: World) -> None:
    await world.add_sim(A, None, slot="usb-1.1")
    marks = TakeOffMarks(world.store)
    await marks.mark(A, "usb-1.1", TakeOffItem(number=NUM_A, id=1, sum=75.5, country="7"))
    swapped = [sim_status("usb-1.1", NEW, "+79161230009")]
    # The supervisor (a modem changed) and the numbers sync (a list is due) at once.
    await asyncio.gather(marks.settle(swapped), marks.settle(swapped))
    assert marks.open_marks() == []
    assert Sim.get_by_id(A).takeoff_done_at is not None
    done = Event.select().where(Event.kind == "takeoff_done")
    assert [event.iccid for event in done] == [A]


async def test_the_poller_backs_off_a_flaky_link_probes_a_refused_account_then_marks(
    world: World,
) -> None:
    numbers, _ = await started(world, offline=False)
    state = UplinkTracker()
    seen: list[UplinkCondition] = []
    changed = asyncio.Event()

    def record(snapshot: UplinkSnapshot) -> None:
        seen.append(snapshot.condition)
        changed.set()

    async def until_seen(condition: UplinkCondition) -> None:
        async with asyncio.timeout(5):
            while condition not in seen:
                changed.clear()
                await changed.wait()

    state.on_change(record)
    marks, marked = TakeOffMarks(world.store), asyncio.Event()
    poller = TakeOffPoller(
        world.client, marks, numbers.holders, sum_rub=50, interval=3600, state=state,
        policy=FAST, probe=account_probe(interval=0.02, jitter=0), on_marked=marked.set,
    )  # fmt: skip
    await world.standin.set_faults(error_rate=1.0)  # 5xx: the transient back-off
    world.start(poller.run())
    await until_seen(UplinkCondition.BACKING_OFF)
    await world.standin.set_faults(clear=True, force="ERROR_WRONG_KEY")
    await until_seen(UplinkCondition.PAUSED)  # then the slow probe; nothing marked
    assert not marks.open_marks()
    await world.standin.set_faults(clear=True)
    async with asyncio.timeout(5):
        await marked.wait()
    assert [mark.iccid for mark in marks.open_marks()] == [A]
    assert state.snapshot.condition is UplinkCondition.OK
    assert len(world.requests("takeOffNumbers")) >= 3


async def test_takeoff_sum_zero_disables_polling(world: World) -> None:
    marks = TakeOffMarks(world.store)
    poller = TakeOffPoller(world.client, marks, dict, sum_rub=0, interval=1)
    await poller.run()  # returns at once
    assert world.requests("takeOffNumbers") == []
