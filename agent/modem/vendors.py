"""Every modem vendor's quirks in one place: one :class:`VendorProfile` each.

A vendor's modules differ from 27.005/27.007 in a few known ways, and each way is a field
of its profile: how the agent recognises the module (what ``+CGMI``/``+CGMM``/``ATI`` say,
and its USB VID:PID with the role of each USB interface), the commands that quiet its
noise at set-up, how its ICCID is read, how it wants a USSD code written, which of its own
reports says the SIM's state, and where it puts received SMS besides the SIM. Everything
else is the standard, handled the same for every module.

:data:`GENERIC` is the fallback for a module no profile recognises: every field is the
standard's way (or tries every vendor's way, as the ICCID queries do), so an unknown
module still works. A vendor profile sets every field, and a field where the vendor does
nothing special says so by naming GENERIC's value, as bellows' per-version protocol
classes override only what differs. ``tests/modem/test_vendors.py`` checks that each
profile is complete and that every module the emulator plays is recognised.

Adding a vendor: a profile here (and in ``VENDORS``), and an emulated profile in
``agent/emulate/modems/profiles.py`` to test it against (docs/modems.md, "A new vendor").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from agent.protocol.urc import HuaweiSimState, Urc
from agent.status import SimState

# Roles of a modem's USB interfaces (discovery classifies ports with them).
ROLE_AT = "at"
ROLE_DIAG = "diag"
ROLE_NMEA = "nmea"
ROLE_AUDIO = "audio"


@dataclass(frozen=True)
class UsbDevice:
    """A USB device whose tty interfaces are documented.

    ``pid`` None: every product of the VID. ``roles`` maps interface numbers to roles; an
    interface not listed is probed. ``bridge`` marks USB-serial bridge chips: what is
    behind each UART is unknown (probe it, autobaud-aware), and each UART is its own
    modem. ``urc_interface``: the AT port to use when there are several.
    """

    vid: str
    pid: str | None
    name: str
    source: str
    roles: Mapping[int, str] = field(default_factory=dict)
    bridge: bool = False
    urc_interface: int | None = None


@dataclass(frozen=True)
class IccidQuery:
    """A command that reads the SIM's ICCID and the prefixes its answer line may have."""

    command: str
    answer_prefixes: tuple[str, ...]


class UssdCoding(StrEnum):
    """How ``AT+CUSD=1,"<code>",15`` wants the code written."""

    TEXT = "text"  # as dialled: *100#
    GSM7_PACKED_HEX = "gsm7-packed-hex"  # GSM 7-bit packed, as hex (Huawei sticks)


@dataclass(frozen=True)
class SimStatusReport:
    """A vendor's own unsolicited SIM-state report (besides the standard ``+CPIN:``):
    its URC type and what its state numbers mean; a number not listed is ``otherwise``."""

    urc: type[Urc]
    states: Mapping[int, SimState]
    otherwise: SimState

    def state_of(self, state: int) -> SimState:
        return self.states.get(state, self.otherwise)


@dataclass(frozen=True)
class StorageQuirks:
    """Where the vendor's modules put received SMS besides the SIM ("SM").

    ``receives_into``: storages they are known to fill on their own (spilling into "ME"
    when the SIM is full, or storing there by default). A sweep reads every storage the
    modem lists in ``AT+CPMS=?``; these are read too when it lists none it can be
    understood by (see agent.modem.startup.storages_to_read).
    """

    receives_into: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class VendorProfile:
    """One vendor's quirks; see the module docstring. No field has a default: a profile
    states every one (GENERIC's value where the vendor is not special)."""

    name: str
    # Lower-case words of +CGMI/+CGMM/ATI that name the vendor's modules.
    recognised_by: tuple[str, ...]
    usb_devices: tuple[UsbDevice, ...]
    # Sent after echo off and numeric errors on, before the SIM is checked; a refusal is
    # logged and harmless (older firmware may not know a command).
    setup_commands: tuple[str, ...]
    # Tried in order; the generic EF_ICCID read (CRSM_ICCID) comes after them all.
    iccid_queries: tuple[IccidQuery, ...]
    ussd_coding: UssdCoding
    sim_status_report: SimStatusReport | None
    storage: StorageQuirks
    # Rejecting a ringing call, tried in order; the first that works is kept per modem
    # (agent.modem.calls).
    hangup_commands: tuple[str, ...]


_QUECTEL_LAYOUT = {0: ROLE_DIAG, 1: ROLE_NMEA, 2: ROLE_AT, 3: ROLE_AT}
_QUECTEL_SOURCE = (
    "Quectel LTE Linux USB driver user guide (option driver: if0 DIAG, if1 NMEA, if2 AT, "
    "if3 modem/PPP); docs/modems.md"
)
_SIERRA_LAYOUT = {0: ROLE_DIAG, 2: ROLE_NMEA, 3: ROLE_AT}
_SIERRA_SOURCE = "Linux qcserial.c QCSERIAL_SWI layout: 0 DM/DIAG, 2 NMEA, 3 AT-capable modem"

# The SIM as every module has it (27.007 8.18 +CRSM): EF_ICCID (2FE2) read whole.
CRSM_ICCID = "AT+CRSM=176,12258,0,0,10"

_CCID = IccidQuery("AT+CCID", ("+CCID",))
_CICCID = IccidQuery("AT+CICCID", ("+CICCID",))
_QCCID = IccidQuery("AT+QCCID", ("+QCCID",))
_HUAWEI_ICCID = IccidQuery("AT^ICCID?", ("^ICCID",))

GENERIC = VendorProfile(
    name="generic",
    recognised_by=(),  # the fallback: what no other profile recognises
    # USB-serial bridges carry anyone's module (SIM800 sticks, pool boards): probe it.
    usb_devices=(
        UsbDevice(
            "1a86",
            "7523",
            "CH340 USB-serial bridge",
            "WCH CH340 datasheet: one UART (SIM800 sticks and pool boards); docs/modems.md",
            bridge=True,
        ),
        UsbDevice(
            "10c4",
            "ea60",
            "CP210x USB-serial bridge",
            "Silicon Labs CP2102/CP2104 datasheet: one UART per interface",
            bridge=True,
        ),
        UsbDevice(
            "0403",
            None,
            "FTDI USB-serial bridge",
            "FTDI FT232/FT2232/FT4232 datasheets: one UART per interface",
            bridge=True,
        ),
    ),
    setup_commands=(),
    # Every vendor's command, the most common first: one of them is likely understood.
    iccid_queries=(_CCID, _QCCID, _CICCID, _HUAWEI_ICCID),
    ussd_coding=UssdCoding.TEXT,
    sim_status_report=None,
    storage=StorageQuirks(receives_into=()),
    # 27.007's AT+CHUP rejects a call that is only ringing; a module that refuses it (the
    # SIM800's manual documents ATH for hanging up) gets V.250's ATH.
    hangup_commands=("AT+CHUP", "ATH"),
)

SIMCOM = VendorProfile(
    name="simcom",
    recognised_by=("simcom", "sim800", "sim7"),
    usb_devices=(
        UsbDevice(
            "1e0e",
            "9001",
            "SIMCom SIM7600/SIM7100",
            "SIMCom SIM7600 Linux USB user guide (if0 DIAG, if1 NMEA, if2 AT, if3 modem, "
            "if4 audio); docs/modems.md",
            {0: ROLE_DIAG, 1: ROLE_NMEA, 2: ROLE_AT, 3: ROLE_AT, 4: ROLE_AUDIO},
        ),
        UsbDevice("1e0e", None, "SIMCom module", "SIMCom VID: layout varies, probe"),
    ),
    setup_commands=GENERIC.setup_commands,
    iccid_queries=(_CCID, _CICCID),  # SIM800 has +CCID, SIM7xxx +CICCID
    ussd_coding=GENERIC.ussd_coding,
    sim_status_report=GENERIC.sim_status_report,
    storage=StorageQuirks(receives_into=("ME",)),  # SIM800 spills into ME when SM is full
    hangup_commands=GENERIC.hangup_commands,
)

QUECTEL = VendorProfile(
    name="quectel",
    recognised_by=("quectel",),
    usb_devices=(
        *(
            UsbDevice("2c7c", pid, name, _QUECTEL_SOURCE, _QUECTEL_LAYOUT)
            for pid, name in (
                ("0125", "Quectel EC25"),
                ("0121", "Quectel EC21"),
                ("0191", "Quectel EG91"),
                ("0195", "Quectel EG95"),
                ("0296", "Quectel BG96"),
                ("0306", "Quectel EP06/EG06"),
                ("0800", "Quectel RM500Q"),
            )
        ),
        UsbDevice(
            "05c6",
            "9215",
            "Quectel EC20 (Qualcomm VID)",
            "Linux qcserial.c QCSERIAL_QMI layout: 0 DM, 1 NMEA, 2 AT, 3 modem",
            _QUECTEL_LAYOUT,
        ),
        UsbDevice("2c7c", None, "Quectel module", "Quectel VID: layout varies, probe"),
    ),
    # URCs to the AT port we use (by default some go to the modem/PPP port).
    setup_commands=('AT+QURCCFG="urcport","usbat"',),
    iccid_queries=(_QCCID,),
    ussd_coding=GENERIC.ussd_coding,
    sim_status_report=GENERIC.sim_status_report,
    storage=StorageQuirks(receives_into=("ME",)),  # EC25 spills into ME when SM is full
    hangup_commands=GENERIC.hangup_commands,
)

HUAWEI = VendorProfile(
    name="huawei",
    recognised_by=("huawei",),
    usb_devices=(
        UsbDevice(
            "12d1",
            "1001",
            "Huawei E169/E1550",
            "usb_modeswitch / ModemManager huawei plugin: if0 modem, if1 DIAG, if2 PCUI "
            "(the control port: URCs go there, the modem port is for PPP)",
            {0: ROLE_AT, 1: ROLE_DIAG, 2: ROLE_AT},
            urc_interface=2,
        ),
        UsbDevice(
            "12d1",
            "1436",
            "Huawei E173",
            "ModemManager huawei plugin: PCUI (if2) is the AT port; docs/modems.md",
            {2: ROLE_AT},
        ),
        UsbDevice("12d1", None, "Huawei modem", "Huawei VID: PCUI interface varies, probe"),
    ),
    setup_commands=("AT^CURC=0",),  # stops the ^RSSI/^MODE/^SRVST flood
    iccid_queries=(_HUAWEI_ICCID,),
    ussd_coding=UssdCoding.GSM7_PACKED_HEX,
    # ^SIMST: 1 valid, 255 missing; 0 invalid and 240 (ROM SIM) cannot serve SMS.
    sim_status_report=SimStatusReport(
        HuaweiSimState, {1: SimState.READY, 255: SimState.ABSENT}, SimState.ERROR
    ),
    storage=StorageQuirks(receives_into=("ME",)),  # E1550 receives into ME by default
    hangup_commands=GENERIC.hangup_commands,
)

SIERRA = VendorProfile(
    name="sierra",
    recognised_by=("sierra",),
    usb_devices=(
        UsbDevice("1199", "68a2", "Sierra MC7710", _SIERRA_SOURCE, _SIERRA_LAYOUT),
        UsbDevice("1199", "68c0", "Sierra MC7304/MC7354", _SIERRA_SOURCE, _SIERRA_LAYOUT),
        UsbDevice("1199", "9071", "Sierra EM7455/MC7455", _SIERRA_SOURCE, _SIERRA_LAYOUT),
        UsbDevice("1199", "9091", "Sierra EM7565", _SIERRA_SOURCE, _SIERRA_LAYOUT),
        UsbDevice("1199", None, "Sierra Wireless modem", "Sierra VID: layout varies, probe"),
    ),
    setup_commands=GENERIC.setup_commands,
    iccid_queries=(IccidQuery("AT!ICCID?", ("!ICCID", "ICCID")),),
    ussd_coding=GENERIC.ussd_coding,
    sim_status_report=GENERIC.sim_status_report,
    storage=GENERIC.storage,
    hangup_commands=GENERIC.hangup_commands,
)


def _probe_only(name: str, recognised_by: tuple[str, ...], device: UsbDevice) -> VendorProfile:
    """A vendor known by its USB VID only: its layouts vary, so its ports are probed, and
    it is served the standard's way."""
    return VendorProfile(
        name=name,
        recognised_by=recognised_by,
        usb_devices=(device,),
        setup_commands=GENERIC.setup_commands,
        iccid_queries=GENERIC.iccid_queries,
        ussd_coding=GENERIC.ussd_coding,
        sim_status_report=GENERIC.sim_status_report,
        storage=GENERIC.storage,
        hangup_commands=GENERIC.hangup_commands,
    )


ZTE = _probe_only(
    "zte", ("zte",), UsbDevice("19d2", None, "ZTE modem", "ZTE VID: layouts vary per product")
)
TELIT = _probe_only(
    "telit", ("telit",), UsbDevice("1bc7", None, "Telit module", "Telit VID: layouts vary")
)
UBLOX = _probe_only(
    "u-blox", ("u-blox",), UsbDevice("1546", None, "u-blox module", "u-blox VID (CDC ACM)")
)
FIBOCOM = _probe_only(
    "fibocom", ("fibocom",), UsbDevice("2cb7", None, "Fibocom module", "Fibocom VID: varies")
)

# Order matters only for recognition by words: the first profile whose word appears wins.
VENDORS: tuple[VendorProfile, ...] = (
    QUECTEL,
    HUAWEI,
    SIMCOM,
    SIERRA,
    ZTE,
    TELIT,
    UBLOX,
    FIBOCOM,
    GENERIC,
)


def vendor_named(manufacturer: str | None, model: str | None) -> VendorProfile:
    """The profile of a module from what it says of itself (``+CGMI``, ``+CGMM`` or ATI),
    never from its port name; GENERIC when no profile's word is in it."""
    text = f"{manufacturer or ''} {model or ''}".lower()
    for vendor in VENDORS:
        if any(word in text for word in vendor.recognised_by):
            return vendor
    return GENERIC


def known_device(vid_pid: str | None) -> tuple[VendorProfile, UsbDevice] | None:
    """The profile and table entry for ``"vvvv:pppp"``: an exact product first, then
    every product of the VID; None for a device no profile lists."""
    if not vid_pid:
        return None
    vid, _, pid = vid_pid.lower().partition(":")
    listed = [(vendor, device) for vendor in VENDORS for device in vendor.usb_devices]
    exact = [entry for entry in listed if entry[1].vid == vid and entry[1].pid == pid]
    any_product = [entry for entry in listed if entry[1].vid == vid and entry[1].pid is None]
    matches = exact or any_product
    return matches[0] if matches else None


def sim_state_reported(urc: Urc) -> SimState | None:
    """The SIM state a vendor's own SIM report says, or None when ``urc`` is none.

    A URC is known by its prefix whatever module sent it, so the report is looked up
    among all profiles, not only the one the modem was recognised as."""
    for vendor in VENDORS:
        report = vendor.sim_status_report
        state = getattr(urc, "state", None)  # every report's URC type has it
        if report is not None and isinstance(urc, report.urc) and isinstance(state, int):
            return report.state_of(state)
    return None
