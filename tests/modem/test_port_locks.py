"""One program per serial port (issue 14, item 3): a port another program holds, by
flock as picocom and pyserial take it or by a UUCP lock file as minicom and gammu write it,
is skipped and reported with its holder, never opened and never marked failed; the ports
the agent holds are the same to anyone else, a scan among them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.emulate.modems import Hub
from agent.locking import UUCP_LOCK_DIR, process_name, uucp_lock_name
from agent.modem.discovery import ROLE_BUSY, probe_group, scan
from agent.modem.fleet import ReprobeBackoff
from agent.modem.worker import ModemWorker
from agent.status import ModemState, ModemStatus
from agent.store import Store
from tests.e2e.site import StartSite
from tests.locks_helpers import HOLD_NOTHING, HOLD_PORT_FLOCK, holder
from tests.modem.conftest import FAST, FleetView


def at_link(hub: Hub, index: int) -> str:
    return next(str(port.link) for port in hub.slots[index].ports if port.spec.role == "at")


def device_of(link: str) -> str:
    return os.path.realpath(link)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = Hub(tmp_path / "modems", count=2, profile="sim800", seed=2)
    await hub.start()
    yield hub
    await hub.stop()


async def test_a_port_held_by_flock_is_skipped_naming_its_holder(hub: Hub) -> None:
    held = at_link(hub, 0)
    with holder(HOLD_PORT_FLOCK, held) as child:
        result = await scan([f"{hub.directory}/*"], auto=False)
        assert [modem.imei for modem in result.modems] == [hub.slots[1].modem.imei]
        (busy,) = result.ignored
        assert busy.role == ROLE_BUSY
        assert busy.device == device_of(held)
        assert f"held by {process_name(child.pid)} (PID {child.pid})" in busy.why
    result = await scan([f"{hub.directory}/*"], auto=False)  # let go: found again
    assert len(result.modems) == 2
    assert all(modem.state is ModemState.READY for modem in result.modems)


@pytest.mark.skipif(
    not os.access(UUCP_LOCK_DIR, os.W_OK), reason=f"{UUCP_LOCK_DIR} is not writable here"
)
async def test_a_port_with_a_live_uucp_lock_file_is_skipped_a_stale_one_taken(hub: Hub) -> None:
    held = at_link(hub, 1)
    lock_file = UUCP_LOCK_DIR / uucp_lock_name(held)
    try:
        with holder(HOLD_NOTHING) as child:
            lock_file.write_text(f"{child.pid:>10}\n")  # as minicom writes it
            result = await scan([f"{hub.directory}/*"], auto=False)
            assert [modem.imei for modem in result.modems] == [hub.slots[0].modem.imei]
            (busy,) = result.ignored
            assert busy.role == ROLE_BUSY
            assert f"(PID {child.pid}) (lock file {lock_file})" in busy.why
        # The holder is gone and its file stayed behind: stale, taken over, removed after.
        result = await scan([f"{hub.directory}/*"], auto=False)
        assert len(result.modems) == 2
        assert not lock_file.exists()
    finally:
        lock_file.unlink(missing_ok=True)


async def test_the_agent_skips_a_held_port_then_takes_it_when_it_is_let_go(
    start_site: StartSite,
) -> None:
    site = await start_site(count=2, profile="sim800")
    await site.ready_modems(2)
    assert site.agent.fleet is not None
    fleet = site.agent.fleet
    # While the agent serves its modems, its ports are held: a scan beside it (what marked
    # a modem failed before) lists them as in use by this process and opens none of them.
    result = await scan([f"{site.hub.directory}/*"], auto=False)
    assert result.modems == ()
    assert {port.role for port in result.ignored} == {ROLE_BUSY}
    assert all(f"(PID {os.getpid()})" in port.why for port in result.ignored)
    assert all(m.state is ModemState.READY for m in fleet.modems())

    # A modem whose port someone else holds when it (re)appears is skipped, not failed.
    slot = next(m.slot for m in fleet.modems() if m.imei == site.hub.slots[0].modem.imei)
    site.hub.fault(0, "unplug")
    await site.until(lambda: fleet.statuses[slot].state is ModemState.GONE)
    # Replugged and taken by the holder with no await between: the agent (on this event
    # loop) first sees the new port when it is already held.
    site.hub.fault(0, "replug")
    with holder(HOLD_PORT_FLOCK, at_link(site.hub, 0)) as child:
        await site.until(lambda: "PID" in (fleet.statuses[slot].fault or ""))
        status = fleet.statuses[slot]
        assert status.state is ModemState.PROBING
        assert f"held by {process_name(child.pid)} (PID {child.pid})" in (status.fault or "")
    fleet.rescan()
    await site.until(lambda: fleet.statuses[slot].state is ModemState.READY)


async def test_a_worker_whose_port_is_taken_hands_the_slot_back_to_probing(hub: Hub) -> None:
    statuses: list[ModemStatus] = []
    worker = ModemWorker(
        at_link(hub, 0), slot="1.1.1", sink=NoSink(), on_status=statuses.append, settings=FAST
    )
    with holder(HOLD_PORT_FLOCK, at_link(hub, 0)) as child:
        async with asyncio.timeout(10):
            ended = await worker.run()
    assert ended.state is ModemState.PROBING  # not GONE (it is there), not FAILED
    assert f"port in use: {at_link(hub, 0)}: held by" in (ended.fault or "")
    assert f"(PID {child.pid})" in (ended.fault or "")
    assert ModemState.FAILED not in {status.state for status in statuses}


class NoSink:
    """A worker that never opens its port never hands over a PDU."""

    async def ingest_pdu(self, **fields: object) -> object:
        raise AssertionError(f"no PDU expected, got {fields}")


async def test_a_probed_port_taken_by_another_program_is_tried_again_on_the_back_off(
    hub: Hub, tmp_path: Path
) -> None:
    """After the probe (or a table's word) the fleet holds a group whose AT port is known;
    if another program takes the port before the worker opens it, the next try waits out
    the re-probe back-off instead of starting a new worker at once, again and again."""
    pause = 0.3
    store = await Store.open(tmp_path / "simedge.db")
    view = FleetView(hub, store, reprobe=ReprobeBackoff(initial=pause, growth=1.0, cap=pause))

    def starts() -> list[float]:
        return [at for at, status in view.history if status.state is ModemState.STARTING]

    held = at_link(hub, 0)
    (unprobed,) = [
        event.group
        for event in view.watcher.poll()
        if device_of(held) in (port.device for port in event.group.ports)
    ]
    group = await probe_group(unprobed, answer_within=0.3)
    assert group.at_port is not None
    serving = asyncio.create_task(view.fleet._work(group))  # as _serve hands it over
    try:
        with holder(HOLD_PORT_FLOCK, held):
            await view.until(lambda: len(starts()) >= 3)
            assert view.latest[group.slot].state in (ModemState.STARTING, ModemState.PROBING)
            first, _, third = starts()[:3]
            assert third - first >= 2 * pause * 0.9, (
                f"worker restarted on a held port {len(starts())} times without waiting"
            )
        view.fleet._wake_probes()  # a rescan: the port is free now
        await view.until(lambda: view.latest[group.slot].state is ModemState.READY)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await store.close()
