"""Port layouts beyond one port per modem (issue 15 item 4): a 3-port Huawei stick is one
modem on its PCUI port; a board of four modems on one multi-UART chip the device table
does not know (1a86:55d9) is four modems, told apart by the IMEI each port names."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.emulate.modems import Hub
from agent.errors import ControlError, StoreDamaged
from agent.modem.discovery import (
    ROLE_AT,
    ROLE_DIAG,
    PortGroup,
    enumerate_ports,
    group_ports,
    probe_group,
    split_by_identity,
)
from agent.modem.vendors import known_device
from agent.modem.worker import ModemWorker, WorkerCommand
from agent.status import PortInfo
from agent.store import Store
from tests.modem.conftest import (
    FAST,
    RecordingSink,
    StartHub,
    StatusWatch,
    emulator_events,
    fleet_on,
    message_count,
    ready,
    settled,
    stored_on_modem,
)

PI4 = "platform-fd500000.pcie-pci-0000:01:00.0"


def hub_ports(hub: Hub, *, sysfs: bool = True) -> list[PortInfo]:
    """The hub's ports as discovery enumerates them; ``sysfs`` adds the VID:PID that
    pyserial reads from sysfs on a Pi (the emulator's hub.json stands in for it)."""
    ports = enumerate_ports([f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "x")
    if not sysfs:
        return ports
    usb_ids = {
        port["tty"]: f"{modem['usb']['vid']}:{modem['usb']['pid']}"
        for modem in hub.description()["modems"]
        for port in modem["ports"]
    }
    return [replace(port, vid_pid=usb_ids[port.device]) for port in ports]


async def probed_groups(hub: Hub, *, sysfs: bool = True) -> list[PortGroup]:
    groups = group_ports(hub_ports(hub, sysfs=sysfs))
    return list(await asyncio.gather(*(probe_group(g, answer_within=0.3) for g in groups)))


async def test_a_three_port_huawei_is_one_modem_on_its_pcui_port(start_hub: StartHub) -> None:
    hub = await start_hub(count=1, profile="huawei3")
    [group] = await probed_groups(hub)
    assert [(p.interface, p.role) for p in group.ports] == [
        (0, ROLE_AT),
        (1, ROLE_DIAG),
        (2, ROLE_AT),
    ]
    assert group.at_port is not None
    assert group.at_port.interface == 2  # PCUI, where the URCs go; if0 is for PPP
    # Both AT ports name the same IMEI: one modem.
    assert await split_by_identity(group, answer_within=0.3) == [group]


async def test_a_huawei_receiving_into_its_memory_is_swept_on_its_pcui_port(
    start_hub: StartHub, store: Store
) -> None:
    # The E1550 profile receives into "ME" until a host chooses: what came before the
    # agent sits there, and the start-up sweep must find it.
    hub = await start_hub(count=1, profile="huawei3")
    modem = hub.slots[0].modem
    hub.inject(0, "+79161234567", "code 7788")
    await emulator_events(hub, "stored", 1)
    assert modem.me.used == 1
    [group] = await probed_groups(hub)
    assert group.at_port is not None
    sink, watch = RecordingSink(store), StatusWatch()
    worker = ModemWorker(
        group.at_port.device, slot=group.slot, sink=sink, on_status=watch, settings=FAST
    )
    task = asyncio.create_task(worker.run())
    try:
        await watch.until(ready)
        await sink.until(1)
        await settled(worker)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [call["storage"] for call in sink.calls] == ["ME"]
    assert modem.me.used == 0
    assert await message_count(store) == 1


def test_several_uarts_on_one_interface_are_several_modems_whatever_the_table() -> None:
    base = f"/dev/serial/by-path/{PI4}-usb-0:1.4:1.0"
    ports = [
        PortInfo(device=f"/dev/ttyCH9344USB{n}", by_path=f"{base}-port{n}", vid_pid="1a86:55d9")
        for n in range(4)
    ]
    assert known_device("1a86:55d9") is None
    assert [g.slot for g in group_ports(ports)] == ["1.4", "1.4-p1", "1.4-p2", "1.4-p3"]


async def test_four_modems_on_one_unknown_multi_uart_chip_are_four_modems(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(count=4, profile="quad")
    assert known_device("1a86:55d9") is None  # the table does not know the chip
    [board] = await probed_groups(hub)  # one USB device: one group by the USB layout
    assert len(board.at_ports) == 4
    modems = await split_by_identity(board, answer_within=0.3, labels={"1.1.1-if2": "B3"})
    assert [(m.slot, m.label, m.at_port.interface) for m in modems if m.at_port] == [
        ("1.1.1", None, 0),
        ("1.1.1-if1", None, 1),
        ("1.1.1-if2", "B3", 2),
        ("1.1.1-if3", None, 3),
    ]
    assert len({m.key for m in modems}) == 4


async def test_the_fleet_runs_a_worker_for_each_modem_of_the_board(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(count=4, profile="quad")
    async with fleet_on(hub, store) as view:
        await view.until(lambda: view.ready() == 4)
        latest = view.latest
        assert {latest[s].imei for s in latest} == {slot.modem.imei for slot in hub.slots}
        assert sorted(latest) == ["1.1.1", "1.1.1-if1", "1.1.1-if2", "1.1.1-if3"]
        stored = asyncio.Event()
        store.on_message_ready(lambda _iccid: stored.set())
        hub.inject(3, "+79161234567", "code for the fourth")
        async with asyncio.timeout(5):
            await stored.wait()
        (due,) = await store.due_messages(datetime.now(UTC) + timedelta(days=1), 10)
        assert (due.text, due.slot) == ("code for the fourth", "1.1.1-if3")


async def test_a_worker_that_fails_ends_the_fleet_not_silently_its_board(
    start_hub: StartHub, store: Store, tmp_path: Path
) -> None:
    """One modem of a board meets a store error its worker cannot handle (here SQLite's
    "malformed" from a trigger, as a damaged page says it): the fleet ends with that error,
    so the supervisor stops the agent with the way out, instead of the board's four
    workers ending unseen with their slots still shown ready."""
    hub = await start_hub(count=4, profile="quad")
    async with fleet_on(hub, store) as view:
        await view.until(lambda: view.ready() == 4)
        with sqlite3.connect(tmp_path / "simedge.db") as connection:
            connection.execute(
                'CREATE TRIGGER "damaged" BEFORE INSERT ON "received_pdu" BEGIN'
                " SELECT RAISE(ABORT, 'database disk image is malformed'); END"
            )
        hub.inject(3, "+79161234567", "code for the fourth")
        assert view.running is not None
        async with asyncio.timeout(10):
            with pytest.raises(StoreDamaged, match="simedge db recover"):
                await view.running
        assert stored_on_modem(hub, 3) == 1  # never deleted: it stays on the SIM


async def test_unplugging_a_board_ends_the_worker_of_every_modem_on_it(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(count=4, profile="quad")
    async with fleet_on(hub, store) as view:
        await view.until(lambda: view.ready() == 4)
        for index in range(4):
            hub.fault(index, "unplug")
        # The watcher's removal, after each worker saw its own port go.
        await view.until(lambda: all(s.fault == "unplugged" for s in view.latest.values()))
        assert len(view.latest) == 4
        with pytest.raises(ControlError, match="no running modem"):
            view.fleet.command("1.1.1-if3", WorkerCommand.RESET)
        left = [t for t in asyncio.all_tasks() if t.get_name().startswith("modem ")]
        assert not left, left
