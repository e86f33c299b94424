"""Plain dataclasses that describe the site's state: the vocabulary shared by the agent's
parts, ``simedge scan``/``status``, the control socket and the dashboard.

This module imports nothing of the agent but the standard library, so the dashboard may
import it (it is the only part of ``agent`` the TUI sees besides the control client).
Values here are snapshots: whoever owns a piece of state builds a new one when it changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class ModemState(StrEnum):
    """Where a modem is in its life, as a person on site would want it said."""

    PROBING = "probing"  # found, not yet known to speak AT
    STARTING = "starting"  # initialising, identifying the SIM
    READY = "ready"  # receiving SMS
    RECOVERING = "recovering"  # on the recovery ladder (the fault says why)
    FAILED = "failed"  # gave up for now; retried on a back-off
    GONE = "gone"  # unplugged


class SimState(StrEnum):
    READY = "ready"
    ABSENT = "absent"  # no SIM in the modem (CME 10, +CPIN: NOT INSERTED)
    LOCKED = "locked"  # PIN or PUK required: a person must act
    BUSY = "busy"  # SIM busy / initialising
    ERROR = "error"
    UNKNOWN = "unknown"


class NumberSource(StrEnum):
    """Where the SIM's own number came from (most SIMs do not store it)."""

    CNUM = "cnum"
    USSD = "ussd"
    MANUAL = "manual"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PortInfo:
    """One serial device and what is known of it before anyone talks to it."""

    device: str  # the path we open (/dev/ttyUSB3, or a by-path symlink)
    by_path: str | None = None  # /dev/serial/by-path name, the physical identity
    usb_parent: str | None = None  # e.g. "usb-0:1.2.3": groups a device's interfaces
    interface: int | None = None  # USB interface number (bInterfaceNumber)
    vid_pid: str | None = None  # "2c7c:0125"
    role: str = "unknown"  # "at", "diag", "nmea", "silent", "unknown"
    why: str = ""  # for ignored ports: why


@dataclass(frozen=True)
class ModemStatus:
    """One modem (one physical slot) as the agent knows it now."""

    slot: str
    label: str | None = None
    ports: tuple[str, ...] = ()
    at_port: str | None = None
    state: ModemState = ModemState.PROBING
    fault: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    imei: str | None = None
    sim_state: SimState = SimState.UNKNOWN
    iccid: str | None = None
    imsi: str | None = None
    number: str | None = None
    number_source: NumberSource = NumberSource.UNKNOWN
    operator: str | None = None  # MCC+MNC digits of the serving network or the IMSI
    operator_name: str | None = None
    signal_dbm: int | None = None
    signal_bars: int | None = None
    registration: str | None = None  # "home", "roaming", "searching", "denied", ...
    registered: bool = False
    storage_used: int | None = None
    storage_total: int | None = None
    updated_at: float = 0.0  # unix time of this snapshot

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class ScanResult:
    """What one discovery pass found: modems, and the ports it left alone with why."""

    modems: tuple[ModemStatus, ...] = ()
    ignored: tuple[PortInfo, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "modems": [m.to_json() for m in self.modems],
            "ignored": [_jsonable(asdict(p)) for p in self.ignored],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, StrEnum):
        return str(value)
    return value
