"""Discovery: by-path names, the VID:PID table, grouping and probing, on real ptys.

Emulated modems come in through a glob of the hub's folder, exactly as a configured glob
of ``/dev/serial/by-path`` would on a Pi: discovery never reads the emulator's hub.json.
"""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.emulate.modems import Hub
from agent.modem import vendors
from agent.modem.discovery import (
    ROLE_AT,
    ROLE_DIAG,
    ROLE_NMEA,
    ROLE_SILENT,
    PortGroup,
    UsbPath,
    classify_by_table,
    enumerate_ports,
    group_ports,
    parse_by_path,
    parse_sysfs_location,
    probe_group,
)
from agent.modem.vendors import known_device
from agent.status import PortInfo
from tests.modem.conftest import StartHub

PI4 = "platform-fd500000.pcie-pci-0000:01:00.0"


def hub_ports(hub: Hub) -> list[PortInfo]:
    return enumerate_ports([f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "none")


async def probed(hub: Hub, labels: dict[str, str] | None = None) -> list[PortGroup]:
    groups = group_ports(hub_ports(hub), labels)
    return list(await asyncio.gather(*(probe_group(g, answer_within=0.3) for g in groups)))


@pytest.fixture
def silent_ports(tmp_path: Path) -> Iterator[list[str]]:
    """Two ptys nobody answers on, behind by-path style links."""
    folder = tmp_path / "silent"
    folder.mkdir()
    fds: list[int] = []
    links = []
    for n in (1, 2):
        master, slave = os.openpty()
        tty.setraw(slave)
        fds += [master, slave]
        link = folder / f"{PI4}-usb-0:2.{n}:1.0-port0"
        link.symlink_to(os.ttyname(slave))
        links.append(str(link))
    yield links
    for fd in fds:
        os.close(fd)


# --------------------------------------------------------------- names and the table


@pytest.mark.parametrize(
    ("name", "expected", "slot"),
    [
        (f"{PI4}-usb-0:1.2.3:1.2-port0", UsbPath(PI4, "1.2.3", 2, 0), "1.2.3"),
        ("pci-0000:00:14.0-usb-0:2:1.0", UsbPath("pci-0000:00:14.0", "2", 0), "2"),  # ACM
        (
            "/dev/serial/by-path/pci-0000:00:14.0-usbv2-0:3.1:1.1-port2",
            UsbPath("pci-0000:00:14.0", "3.1", 1, 2),
            "3.1",
        ),
        (
            "platform-xhci-hcd.1-usb-0:1.4:1.3-port0",
            UsbPath("platform-xhci-hcd.1", "1.4", 3),
            "c1-1.4",
        ),
    ],
)
def test_by_path_names_parse_into_usb_parent_interface_and_a_short_slot(
    name: str, expected: UsbPath, slot: str
) -> None:
    parsed = parse_by_path(name)
    assert parsed == expected
    assert parsed.slot == slot
    assert parsed.parent == f"{expected.controller}-usb-0:{expected.chain}"


@pytest.mark.parametrize("name", ["ttyUSB0", "hub.json", "control.sock", "usb-0:1.2"])
def test_names_that_are_not_by_path_are_refused(name: str) -> None:
    assert parse_by_path(name) is None


def test_sysfs_location_gives_the_same_shape_for_ports_without_a_link() -> None:
    first = parse_sysfs_location("1-1.2.3:1.2")
    assert first == UsbPath("usb1", "1.2.3", 2)
    assert first.slot == "1.2.3"
    assert parse_sysfs_location("3-1:1.0").slot == "c2-1"
    assert parse_sysfs_location("not-usb") is None
    ports = [
        PortInfo(
            device=f"/dev/ttyUSB{i}", usb_parent=first.parent, interface=i, vid_pid="2c7c:0125"
        )
        for i in range(4)
    ]
    [group] = group_ports(ports)
    assert group.slot == "1.2.3"


def test_table_names_quectel_interfaces_and_leaves_bridges_to_the_probe() -> None:
    ports = [PortInfo(device=f"/dev/ttyUSB{i}", interface=i, vid_pid="2c7c:0125") for i in range(4)]
    roles = [classify_by_table(port).role for port in ports]
    assert roles == [ROLE_DIAG, ROLE_NMEA, ROLE_AT, ROLE_AT]
    assert "DIAG port of Quectel EC25 (2c7c:0125) interface 0" in classify_by_table(ports[0]).why
    bridge = PortInfo(device="/dev/ttyUSB9", interface=0, vid_pid="1a86:7523")
    assert classify_by_table(bridge).role == "unknown"
    quectel = known_device("2C7C:9999")  # every product of the VID
    assert quectel is not None
    assert (quectel[0], quectel[1].name) == (vendors.QUECTEL, "Quectel module")
    assert known_device("dead:beef") is None
    entries = [known_device("1199:9071"), known_device("0403:6011")]
    assert all(entry is not None and entry[1].source for entry in entries)


def test_each_uart_of_a_multi_port_bridge_is_its_own_modem() -> None:
    base = f"/dev/serial/by-path/{PI4}-usb-0:1.3"
    ports = [
        PortInfo(device=f"/dev/ttyUSB{i}", by_path=f"{base}:1.{i}-port0", vid_pid="0403:6011")
        for i in range(4)
    ]
    groups = group_ports(ports)
    assert [g.slot for g in groups] == ["1.3", "1.3-if1", "1.3-if2", "1.3-if3"]


# -------------------------------------------------------------------- enumeration


async def test_enumeration_keeps_char_devices_once_each_with_their_by_path(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(count=2, profile="ec25")
    link = hub.slots[0].ports[2].link
    tty_node = hub.slots[0].ports[2].tty
    ports = enumerate_ports([f"{hub.directory}/*", tty_node], auto=False, by_path_dir=hub.directory)
    assert len(ports) == 8  # not hub.json, not control.sock; the tty named twice once
    assert all(p.device.startswith("/dev/pts/") for p in ports)
    again = next(p for p in ports if p.device == tty_node)
    assert again.by_path == str(link)
    assert again.interface == 2


# ------------------------------------------------------------ grouping and probing


async def test_ec25_four_ports_are_one_modem_with_diag_and_nmea_ignored(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(count=1, profile="ec25", noise_interval=0.03)
    [group] = await probed(hub, labels={"1.1.1": "left hub, socket 1"})
    assert group.slot == "1.1.1"
    assert group.label == "left hub, socket 1"
    assert [p.role for p in group.ports] == [ROLE_DIAG, ROLE_NMEA, ROLE_AT, ROLE_AT]
    assert group.at_port is not None
    assert group.at_port.interface == 2
    diag, nmea = group.ignored
    assert "DIAG" in diag.why
    assert "slot 1.1.1" in diag.why
    assert "NMEA" in nmea.why


async def test_sim800_autobaud_is_answered_on_a_later_attempt(start_hub: StartHub) -> None:
    hub = await start_hub(count=1, profile="sim800")
    [group] = await probed(hub)
    assert group.at_port is not None
    assert "attempt 2" in group.at_port.why


async def test_huawei_pcui_port_is_the_at_port(start_hub: StartHub) -> None:
    hub = await start_hub(count=1, profile="huawei")
    [group] = await probed(hub)
    assert [(p.interface, p.role) for p in group.ports] == [(2, ROLE_AT)]


async def test_pool_modules_sharing_an_imei_are_separate_modems(start_hub: StartHub) -> None:
    hub = await start_hub(count=9, profile="pool")
    assert len({slot.modem.imei for slot in hub.slots[:8]}) == 1  # one board, one IMEI
    groups = await probed(hub)
    assert len(groups) == 9
    assert len({g.slot for g in groups}) == 9
    assert all(g.at_port is not None for g in groups)
    assert [g.slot for g in groups][7:] == ["1.1.8", "1.2.1"]


async def test_silent_ports_are_ignored_as_silent(silent_ports: list[str]) -> None:
    folder = os.path.dirname(silent_ports[0])
    ports = enumerate_ports([f"{folder}/*"], auto=False, by_path_dir=Path(folder))
    groups = [await probe_group(g, attempts=2, answer_within=0.2) for g in group_ports(ports)]
    assert [g.slot for g in groups] == ["2.1", "2.2"]
    for group in groups:
        assert group.at_port is None
        [port] = group.ignored
        assert port.role == ROLE_SILENT
        assert port.why.startswith("silent: 2 x AT unanswered in 0.4s")


async def test_a_vanished_port_is_ignored_as_gone(tmp_path: Path) -> None:
    group = PortGroup(
        key="x", slot="x", label=None, ports=(PortInfo(device=str(tmp_path / "ttyGONE")),)
    )
    [port] = (await probe_group(group)).ignored
    assert port.role == "gone"
    assert "cannot be opened" in port.why
