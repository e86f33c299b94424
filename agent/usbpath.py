"""Where a serial port sits on the USB tree, from its ``/dev/serial/by-path`` name: the one
grammar of those names, used by discovery to group ports and by the configuration to check
``[site] slot_labels`` keys. Pure: strings in, values out (the config loader imports it,
so it must not pull in the serial stack).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

# udev's path_id: <controller>-usb-0:<port chain>:<config>.<interface>[-port<n>]
# (newer udev also writes "usbv2-0:..."); ACM ttys have no -port suffix.
_BY_PATH = re.compile(
    r"^(?P<controller>.+?)-usb(?:v\d+)?-\d+:(?P<chain>\d+(?:\.\d+)*)"
    r":(?P<config>\d+)\.(?P<interface>\d+)(?:-port(?P<port>\d+))?$"
)
# A USB device without an interface: "<controller>-usb-0:<chain>", a group's key.
_DEVICE_PATH = re.compile(r"^(?P<controller>.+?)-usb(?:v\d+)?-\d+:(?P<chain>\d+(?:\.\d+)*)$")
# sysfs interface name as pyserial's ``location`` gives it: 1-1.2.3:1.2
_SYSFS_LOCATION = re.compile(
    r"^(?P<bus>\d+)-(?P<chain>\d+(?:\.\d+)*):(?P<config>\d+)\.(?P<iface>\d+)$"
)
# A slot's short name (UsbPath.slot, uart_slot): [c<controller>-]<chain>[-if<n>][-p<n>]
_SLOT = re.compile(r"^(?:c\d+-)?\d+(?:\.\d+)*(?:-if\d+)?(?:-p\d+)?$")
# Keys are names a person types; nothing longer is a by-path name (bounds the matching).
MAX_LABEL_KEY = 255


@dataclass(frozen=True)
class UsbPath:
    """Where a tty sits on the USB tree: controller, port chain, interface, UART."""

    controller: str  # by-path prefix, e.g. "platform-fd500000.pcie-pci-0000:01:00.0"
    chain: str  # hub ports from the root, e.g. "1.2.3"
    interface: int
    port: int = 0  # UART within the interface (multi-port bridges)

    @property
    def parent(self) -> str:
        """The USB device's identity: every interface of one device shares it."""
        return f"{self.controller}-usb-0:{self.chain}"

    @property
    def slot(self) -> str:
        """A short stable name for a person: the port chain, tagged with the controller
        when it is not the first one (e.g. a Pi 5's second xHCI: ``c1-1.2``)."""
        bus = re.fullmatch(r"usb(\d+)", self.controller)  # from sysfs: buses count from 1
        number = re.search(r"(\d+)$", self.controller)
        index = int(bus.group(1)) - 1 if bus else int(number.group(1)) if number else 0
        return (f"c{index}-" if index else "") + self.chain

    @property
    def uart_key(self) -> str:
        """The identity of one UART of a USB-serial bridge (each may carry a modem)."""
        return f"{self.parent}:{self.interface}.{self.port}"

    @property
    def uart_slot(self) -> str:
        """The short name of one bridge UART: the slot, then ``-if<n>`` and ``-p<n>``."""
        return (
            self.slot
            + (f"-if{self.interface}" if self.interface else "")
            + (f"-p{self.port}" if self.port else "")
        )


def parse_by_path(name: str) -> UsbPath | None:
    """Parse a ``/dev/serial/by-path`` entry name (or path); None when it is not one."""
    match = _BY_PATH.match(os.path.basename(name))
    if match is None:
        return None
    return UsbPath(
        controller=match["controller"],
        chain=match["chain"],
        interface=int(match["interface"]),
        port=int(match["port"] or 0),
    )


def parse_sysfs_location(location: str) -> UsbPath | None:
    """Parse pyserial's ``location`` (``1-1.2.3:1.2``) for ports with no by-path link."""
    match = _SYSFS_LOCATION.match(location or "")
    if match is None:
        return None
    bus = int(match["bus"])
    return UsbPath(controller=f"usb{bus}", chain=match["chain"], interface=int(match["iface"]))


def label_key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a slot in ``[site] slot_labels``, or None when it can."""
    if len(key) <= MAX_LABEL_KEY and (
        _SLOT.match(key) or parse_by_path(key) or _DEVICE_PATH.match(key)
    ):
        return None
    return (
        f'"{key[:80]}": expected a /dev/serial/by-path name '
        '("platform-...-usb-0:1.2.3:1.0"), a USB device path ("...-usb-0:1.2.3") '
        'or a slot ("1.2.3")'
    )


def label_index(labels: Mapping[str, str]) -> dict[str, str]:
    """Every name a group may be looked up by -> its label, from the configured keys.

    A by-path name labels its USB device (any interface names the device), the one UART
    of a bridge it names, and, for a port that has no by-path link, the slot it implies.
    A short slot name or a device path stands for itself. Keys that fit none of those
    are left out here; the configuration refuses them (:func:`label_key_problem`).
    """
    index: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    for key, label in labels.items():
        usb = parse_by_path(key)
        if usb is not None:
            index.setdefault(usb.parent, label)
            index.setdefault(usb.uart_key, label)
            fallbacks.setdefault(usb.slot, label)
            fallbacks.setdefault(usb.uart_slot, label)
        elif match := _DEVICE_PATH.match(key):
            index.setdefault(f"{match['controller']}-usb-0:{match['chain']}", label)
        else:
            index[key] = label
    return fallbacks | index
