"""Hot-plug against the emulated hub: unplug and replug faults move real ptys and links."""

from __future__ import annotations

import asyncio

import pytest

from agent.modem.discovery import probe_group
from agent.modem.hotplug import Change, HotplugEvent, PortWatcher
from agent.modem.session import AtSession
from agent.modem.worker import ModemWorker
from agent.status import ModemState, ModemStatus
from agent.store import Store
from tests.modem.conftest import FAST, StartHub, StatusWatch


def summary(events: list[HotplugEvent]) -> list[tuple[str, str]]:
    return [(str(event.change), event.group.slot) for event in events]


async def test_unplug_is_seen_at_once_and_a_returning_modem_keeps_its_slot(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(count=3, profile="ec25")
    watcher = PortWatcher([f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "no")
    assert summary(watcher.poll()) == [("added", "1.1.1"), ("added", "1.1.2"), ("added", "1.1.3")]
    assert watcher.poll() == []

    hub.fault(1, "unplug")
    assert summary(watcher.poll()) == [("removed", "1.1.2")]
    assert [g.slot for g in watcher.present] == ["1.1.1", "1.1.3"]

    hub.fault(1, "replug")
    assert watcher.poll() == []  # settling: udev may not have created every interface yet
    [event] = watcher.poll()
    assert (event.change, event.group.slot) == (Change.ADDED, "1.1.2")
    assert len(event.group.ports) == 4


async def test_unplug_and_replug_between_two_looks_is_a_removal_and_a_return(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(count=1, profile="sim800")
    watcher = PortWatcher([f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "no")
    [first] = watcher.poll()
    hub.fault(0, "replug")  # the pty may come back with the very same /dev/pts number
    assert summary(watcher.poll()) == [("removed", "1.1.1")]
    [again] = watcher.poll()
    assert again.change == Change.ADDED
    assert again.group.key == first.group.key


async def test_a_look_at_unchanged_folders_is_done_on_the_loop_without_a_thread(
    start_hub: StartHub,
) -> None:
    """An idle site looks twice a second: when no watched folder changed, look() returns
    without suspending (no hand-off to a thread and back); a change is listed and
    reported."""
    hub = await start_hub(count=2, profile="sim800")
    watcher = PortWatcher([f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "no")
    assert summary(await watcher.look()) == [("added", "1.1.1"), ("added", "1.1.2")]
    assert await watcher.look() == []  # notes the folders' state

    unchanged = watcher.look()
    with pytest.raises(StopIteration) as returned:
        unchanged.send(None)  # finished at its first step: it never waited for anything
    assert returned.value.value == []

    hub.fault(0, "unplug")
    assert summary(await watcher.look()) == [("removed", "1.1.1")]
    assert await watcher.look() == []


async def test_events_bring_a_returning_modem_into_service_within_five_seconds(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(count=2, profile="sim800")
    watcher = PortWatcher(
        [f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "no", interval=0.1
    )
    events = watcher.events()
    initial = [await anext(events), await anext(events)]
    assert summary(initial) == [("added", "1.1.1"), ("added", "1.1.2")]

    in_service = await probe_group(initial[1].group, answer_within=0.3)
    assert in_service.at_port is not None
    session = await AtSession.open(in_service.at_port.device)
    try:
        hub.fault(1, "unplug")
        async with asyncio.timeout(5):
            gone = await anext(events)
            await session.closed.wait()  # the open port sees the unplug too
        assert (gone.change, gone.group.slot) == (Change.REMOVED, "1.1.2")
    finally:
        await session.close()

    hub.fault(1, "replug")
    async with asyncio.timeout(5):
        back = await anext(events)
        probed = await probe_group(back.group, answer_within=0.3)
    assert (back.change, back.group.slot) == (Change.ADDED, "1.1.2")
    assert probed.at_port is not None
    await events.aclose()


async def test_workers_follow_the_watcher_out_and_back_in_service_within_five_seconds(
    start_hub: StartHub, store: Store
) -> None:
    """The agent's loop in small: each added group is probed and gets a worker; a
    removed one's worker ends GONE (its SIM offline); the returning modem is READY again
    in the same slot with the same SIM, within 5 seconds of the replug."""
    hub = await start_hub(count=2, profile="sim800")
    watcher = PortWatcher(
        [f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "no", interval=0.1
    )
    watches: dict[str, StatusWatch] = {}
    workers: dict[str, asyncio.Task[ModemStatus]] = {}
    started_one = asyncio.Condition()

    async def follow() -> None:
        async for event in watcher.events():
            if event.change is Change.REMOVED:
                continue  # the worker sees its port go and ends by itself
            group = await probe_group(event.group, answer_within=0.3)
            assert group.at_port is not None
            watches[group.slot] = StatusWatch()
            worker = ModemWorker(
                group.at_port.device,
                slot=group.slot,
                usb_path=group.key,
                sink=store,
                on_status=watches[group.slot],
                settings=FAST,
            )
            workers[group.slot] = asyncio.create_task(worker.run())
            async with started_one:
                started_one.notify_all()

    async def worker_started(slot: str) -> None:
        async with asyncio.timeout(5), started_one:
            await started_one.wait_for(lambda: slot in watches)

    follower = asyncio.create_task(follow())
    try:
        await worker_started("1.1.1")
        await worker_started("1.1.2")
        first = await watches["1.1.2"].until(lambda s: s.state is ModemState.READY)
        assert first.iccid == hub.slots[1].modem.sim.iccid

        hub.fault(1, "unplug")
        async with asyncio.timeout(5):
            gone = await workers["1.1.2"]
        assert gone.state is ModemState.GONE

        watches.pop("1.1.2")
        hub.fault(1, "replug")
        await worker_started("1.1.2")
        back = await watches["1.1.2"].until(lambda s: s.state is ModemState.READY)
        assert back.iccid == first.iccid
        assert watches["1.1.1"].latest.state is ModemState.READY  # the other never noticed
    finally:
        follower.cancel()
        for task in workers.values():
            task.cancel()
        await asyncio.gather(follower, *workers.values(), return_exceptions=True)
