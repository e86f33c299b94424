"""Slot labels keyed as the documents show them (/dev/serial/by-path names, device paths,
short slots) label the modems they name, on an emulated by-path tree (issue 15 item 5)."""

from __future__ import annotations

from agent import config
from agent.modem.discovery import enumerate_ports, group_ports
from agent.status import PortInfo
from tests.modem.conftest import StartHub
from tests.test_config_examples import merged


async def test_documented_label_keys_label_the_modems_of_an_emulated_by_path_tree(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(count=4, profile="ec25")
    links = [[port.link.name for port in slot.ports] for slot in hub.slots]
    # Each form a person may write, as the documents show them:
    labels = {
        links[0][2]: "A1",  # the AT port's by-path name, as hardware.md shows
        links[1][0]: "A2",  # the by-path name of another interface of the same modem
        "1.1.3": "A3",  # the short slot name
        f"{hub.slots[3].ports[0].link.name.rpartition(':')[0]}": "A4",  # the device path
    }
    loaded = config.from_mapping(merged({"site": {"slot_labels": labels}}), environ={})
    ports = enumerate_ports([f"{hub.directory}/*"], auto=False, by_path_dir=hub.directory / "none")
    groups = group_ports(ports, loaded.site.slot_labels)
    assert [(group.slot, group.label) for group in groups] == [
        ("1.1.1", "A1"),
        ("1.1.2", "A2"),
        ("1.1.3", "A3"),
        ("1.1.4", "A4"),
    ]


def test_a_by_path_label_names_one_uart_of_a_multi_port_bridge() -> None:
    base = "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3"
    ports = [
        PortInfo(device=f"/dev/ttyUSB{i}", by_path=f"/dev/serial/by-path/{base}:1.{i}-port0",
                 vid_pid="0403:6011")
        for i in range(4)
    ]  # fmt: skip
    groups = group_ports(ports, {f"{base}:1.2-port0": "B3", "1.3": "B1"})
    assert [(group.slot, group.label) for group in groups] == [
        ("1.3", "B1"),
        ("1.3-if1", None),
        ("1.3-if2", "B3"),
        ("1.3-if3", None),
    ]
