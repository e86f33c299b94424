"""NumbersSync against the stand-in: lists follow the live SIMs, throttled, with heartbeats."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace

import pytest

from agent.status import FACT_NUMBERS_ONLINE
from agent.store.facts import read_fact
from agent.store.models import Sim
from agent.uplink.numbers import NumbersSync, check_number, region_of_imsi
from tests.uplink.world import FAST, World, sim_status, world

__all__ = ["world"]

A, B = "8970101234567890001", "8970101234567890002"


def lists(world: World) -> list[list[str]]:
    """The numbers of every list the stand-in received, in order."""
    return [
        [item["number"] for item in json.loads(r.body)["number"]]
        for r in world.requests("sendNumbersOnline")
        if r.status == 200
    ]


def sync(world: World, **options: object) -> NumbersSync:
    settings: dict[str, object] = {"policy": FAST, "debounce": 0.0, "heartbeat": 300} | options
    return NumbersSync(world.client, world.store, world.live, **settings)  # type: ignore[arg-type]


async def test_lists_follow_the_live_sims_and_ids_are_stored(world: World) -> None:
    for iccid in (A, B):
        await world.add_sim(iccid, None)
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, "89161230001")  # national form
    world.modems["usb-1.2"] = sim_status("usb-1.2", B, "+79161230002", registered=False)
    numbers = sync(world)
    world.start(numbers.run())
    await world.until(lambda state: "+79161230001" in state.online)
    item = world.standin.state.online["+79161230001"].item
    assert (item["country_id"], item["operator"], item["port_id"]) == (7, 25001, "usb-1.1")

    world.modems["usb-1.2"] = replace(world.modems["usb-1.2"], registered=True)
    numbers.notify_change()
    await world.until(lambda state: len(state.online) == 2)
    world.modems.pop("usb-1.1")  # unplugged
    numbers.notify_change()
    await world.until(lambda state: set(state.online) == {"+79161230002"})

    assert lists(world) == [["+79161230001"], ["+79161230001", "+79161230002"], ["+79161230002"]]
    assert numbers.current_items()[0]["number"] == "+79161230002"
    # Ids: the one online kept its id, the one gone lost it; date_start persisted.
    await numbers.resync()  # returns once a list and its ids are recorded
    rows = {row.iccid: row for row in Sim.select()}
    assert rows[B].onlinesim_id == world.standin.state.online["+79161230002"].id
    assert rows[B].online_since is not None
    assert rows[A].onlinesim_id is None


async def test_a_flapping_port_sends_at_most_one_list_per_window(world: World) -> None:
    await world.add_sim(A, None)
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, "+79161230001")
    numbers = sync(world, debounce=0.5)
    world.start(numbers.run())
    await world.until(lambda state: len(lists(world)) == 1)
    for flap in range(21):  # ends deregistered: the list must change
        world.modems["usb-1.1"] = replace(world.modems["usb-1.1"], registered=flap % 2 == 1)
        numbers.notify_change()
    await world.until(lambda state: len(lists(world)) == 2)
    times = [r.received_monotonic for r in world.requests("sendNumbersOnline")]
    assert times[1] - times[0] >= 0.45
    assert lists(world)[1] == []  # the state at the end of the window


async def test_the_heartbeat_resends_the_list(world: World) -> None:
    await world.add_sim(A, None)
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, "+79161230001")
    world.start(sync(world, heartbeat=0.1).run())
    await world.until(lambda state: len(lists(world)) >= 3)
    assert lists(world)[-1] == ["+79161230001"]


async def test_an_impossible_number_is_never_sent_and_an_invalid_one_is_sent_with_a_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    for iccid in (A, B):
        await world.add_sim(iccid, None)
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, "12")
    world.modems["usb-1.2"] = sim_status("usb-1.2", B, "+72001230002")  # unassigned range
    with caplog.at_level(logging.WARNING):
        world.start(sync(world).run())
        await world.until(lambda state: len(lists(world)) == 1)
    assert lists(world) == [["+72001230002"]]
    reasons = {row.iccid: row.invalid_number_reason for row in Sim.select()}
    assert reasons[A].startswith("not sent")
    assert "sent anyway" in reasons[B]


async def test_no_number_forces_a_new_list_at_once(world: World) -> None:
    await world.add_sim(A, None)
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, "+79161230001")
    numbers = sync(world, debounce=60)
    world.start(numbers.run())
    await world.until(lambda state: len(lists(world)) == 1)
    world.standin.state.reset()
    await numbers.resync()  # well within the 60 s window
    assert "+79161230001" in world.standin.state.online


def test_national_numbers_take_the_country_of_the_imsi() -> None:
    assert region_of_imsi("250011234567890") == "RU"
    assert check_number("89161234567", "250011234567890").e164 == "+79161234567"
    assert check_number("08031234567", "621301234567890").e164 == "+2348031234567"
    assert check_number("89161234567", None).e164 is None


async def test_after_a_restart_the_list_waits_for_the_numbers_that_were_online(
    world: World,
) -> None:
    """Found by make chaos: at start, before any modem was found, an empty list went up
    and took every number offline at OnlineSim (NO_NUMBER for each SMS until back)."""
    for iccid in (A, B):
        await world.add_sim(iccid, None)
    await world.store.writer.submit(
        lambda: Sim.update(online_since=1_700_000_000).where(Sim.iccid.in_([A, B])).execute(),
        "A and B were online when the agent stopped",
    )
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, "+79161230001")  # B not found yet
    numbers = sync(world, start_grace=60)
    world.start(numbers.run())
    async with asyncio.timeout(10):
        await numbers.holding_back.wait()
    world.modems["usb-1.2"] = sim_status("usb-1.2", B, "+79161230002")
    numbers.notify_change()
    await world.until(lambda state: len(lists(world)) == 1)
    # The only list sent has both: none went up while B was missing.
    assert [sorted(sent) for sent in lists(world)] == [["+79161230001", "+79161230002"]]


async def test_the_start_grace_ends_with_what_is_live(world: World) -> None:
    await world.add_sim(A, None)
    await world.store.writer.submit(
        lambda: Sim.update(online_since=1_700_000_000).where(Sim.iccid == A).execute(),
        "A was online when the agent stopped",
    )
    world.start(sync(world, start_grace=0.2).run())  # A never comes back
    await world.until(lambda state: len(lists(world)) == 1)
    assert lists(world) == [[]]


async def test_online_is_the_accepted_list_and_outlives_a_restart(world: World) -> None:
    await world.add_sim(A, None)
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, "+79161230001")
    numbers = sync(world)
    assert numbers.accepted is None  # nothing accepted yet: "not yet sent"
    world.start(numbers.run())
    await numbers.resync()  # returns once a list was accepted and recorded
    accepted = numbers.accepted
    assert accepted is not None
    assert accepted.count == len(world.standin.state.online) == 1
    stored = await world.store.read(lambda: read_fact(FACT_NUMBERS_ONLINE))
    assert stored == {"count": 1, "accepted_at": accepted.accepted_at}
    await world.stop_tasks()

    # The next run's list is refused (the key was changed): online is still the list
    # OnlineSim accepted last, not the SIMs ready here and not zero.
    await world.standin.set_faults(force="ERROR_WRONG_KEY")
    again = sync(world)
    world.start(again.run())
    await world.until(lambda _state: len(world.requests("sendNumbersOnline")) == 2)
    assert again.accepted == accepted


async def test_a_fresh_balance_is_listed_and_a_stale_one_left_out(world: World) -> None:
    now = 1_800_000_000.75  # within a second of the balance: fresh, not "from the future"
    world.modems["usb-1.1"] = replace(
        sim_status("usb-1.1", A, "+79161230001"), balance=12.5, balance_at=now - 0.5
    )
    world.modems["usb-1.2"] = replace(
        sim_status("usb-1.2", B, "+79161230002"), balance=99.0, balance_at=now - 3 * 86400
    )
    numbers = sync(world, clock=lambda: now, balance_fresh=2 * 86400)
    items = {item["number"]: item for item in numbers.current_items()}
    assert items["+79161230001"]["balance"] == 12.5
    assert "balance" not in items["+79161230002"]
