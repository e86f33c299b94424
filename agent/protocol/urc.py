"""Unsolicited result codes (URCs): recognised by prefix, turned into typed events.

A URC can arrive at any time, also in the middle of a command's response. It is known by
its prefix alone (``+CMTI:``, ``RDY``, ``^RSSI:``), never by when it arrived. Some
prefixes are also the answer of a read command (``+CREG: 0,1`` answers ``AT+CREG?``):
the framer, which knows the pending command, decides which it is; this module only
says which prefixes can be unsolicited and parses a line known to be a URC.

``+CMT``, ``+CDS`` and ``+CBM`` (PDU mode) come as a header line and a PDU line; the
framer collects both and hands them here together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from agent.errors import AtParseError
from agent.protocol.commands import (
    PinStatus,
    RegistrationStatus,
    SignalQuality,
    UssdResponse,
    is_digits,
    parse_cusd,
    parse_registration_urc,
    pin_status_from_line,
    signal_from_rssi,
    split_arguments,
    strip_prefix,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Urc:
    """Base of every URC event; ``line`` is what arrived (header and PDU joined by a
    newline for two-line URCs), kept for logs."""

    line: str

    @property
    def boot_marker(self) -> bool:
        """True for lines a modem prints while starting: in the middle of a session they
        mean it reset itself (or the session restarted its radio) and must be set up
        again, since settings such as +CNMI are lost."""
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsStored(Urc):
    """``+CMTI: "SM",3``: a new SMS was stored at ``index`` of ``storage``."""

    storage: str
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsReceived(Urc):
    """``+CMT: [alpha],length`` + PDU: an SMS delivered straight to us (CNMI mt=2); it
    must be acknowledged with ``AT+CNMA`` when ``AT+CSMS=1`` is in force."""

    alpha: str | None
    length: int
    pdu_hex: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReportStored(Urc):
    """``+CDSI: "SM",5``: a status report was stored."""

    storage: str
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReportReceived(Urc):
    """``+CDS: length`` + PDU: a status report delivered straight to us."""

    length: int
    pdu_hex: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastReceived(Urc):
    """``+CBM: length`` + PDU: a cell broadcast message."""

    length: int
    pdu_hex: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationChanged(Urc):
    """``+CREG: stat[,lac,ci[,act]]`` (and +CGREG, +CEREG)."""

    registration: RegistrationStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class SimStatusChanged(Urc):
    """``+CPIN: READY`` / ``+CPIN: NOT INSERTED`` printed by itself (boot, SIM swap)."""

    status: PinStatus

    @property
    def boot_marker(self) -> bool:
        """Part of SIM800, Quectel and SIMCom boot sequences."""
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionalityChanged(Urc):
    """``+CFUN: 1`` printed by itself: SIM800 at boot."""

    level: int

    @property
    def boot_marker(self) -> bool:
        """Printed while starting."""
        return True


class BootMarker(StrEnum):
    """Readiness lines of a starting modem, by vendor."""

    RDY = "RDY"  # SIM800, Quectel, SIMCom: the UART is up
    CALL_READY = "Call Ready"  # SIM800
    SMS_READY = "SMS Ready"  # SIM800: SMS commands work from here on
    SMS_DONE = "SMS DONE"  # SIMCom 7xxx
    PB_DONE = "PB DONE"  # SIMCom 7xxx
    SYSSTART = "^SYSSTART"  # Huawei/Cinterion


@dataclass(frozen=True, slots=True, kw_only=True)
class BootIndication(Urc):
    """One of the :class:`BootMarker` lines."""

    marker: BootMarker

    @property
    def boot_marker(self) -> bool:
        """Printed while starting."""
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class QuectelIndication(Urc):
    """``+QIND: SMS DONE``, ``+QIND: "csq",20,99``...: ``event`` and its arguments."""

    event: str
    arguments: tuple[str, ...]

    @property
    def boot_marker(self) -> bool:
        """``SMS DONE`` and ``PB DONE`` end a Quectel boot."""
        return self.event.upper() in ("SMS DONE", "PB DONE")


@dataclass(frozen=True, slots=True, kw_only=True)
class QuectelUsim(Urc):
    """``+QUSIM: 1``: Quectel found a USIM (1) or a SIM (0), at boot."""

    usim: int

    @property
    def boot_marker(self) -> bool:
        """Printed while starting."""
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalChanged(Urc):
    """Huawei ``^RSSI: 18`` (same scale as +CSQ)."""

    signal: SignalQuality


@dataclass(frozen=True, slots=True, kw_only=True)
class HuaweiMode(Urc):
    """Huawei ``^MODE: sysmode[,submode]``: the radio technology changed."""

    sysmode: int
    submode: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HuaweiServiceState(Urc):
    """Huawei ``^SRVST: n``: 0 no service, 1 restricted, 2 valid, 3 restricted regional,
    4 power saving."""

    state: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HuaweiSimState(Urc):
    """Huawei ``^SIMST: state[,lock]``: 0 invalid, 1 valid, 240 ROM SIM, 255 missing."""

    state: int
    lock: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageFull(Urc):
    """Huawei ``^SMMEMFULL: "SM"``: the storage is full and reception has stopped."""

    storage: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UssdReceived(Urc):
    """``+CUSD: m[,"str",dcs]``: the answer to a USSD request (arrives after the OK)."""

    response: UssdResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring(Urc):
    """``RING``: an incoming call."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerId(Urc):
    """``+CLIP: "number",type,...``: who is calling."""

    number: str
    type: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Urc):
    """``NO CARRIER`` while no dialling command is pending: a call ended."""


class PowerCondition(StrEnum):
    """Supply and shutdown reports (SIM800 spells WARNING as ``WARNNING``)."""

    UNDER_VOLTAGE_WARNING = "under-voltage warning"
    UNDER_VOLTAGE_POWER_DOWN = "under-voltage power down"
    OVER_VOLTAGE_WARNING = "over-voltage warning"
    OVER_VOLTAGE_POWER_DOWN = "over-voltage power down"
    NORMAL_POWER_DOWN = "normal power down"


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerEvent(Urc):
    """A supply problem or shutdown; on a Pi usually a weak USB hub."""

    condition: PowerCondition


@dataclass(frozen=True, slots=True, kw_only=True)
class VendorIndication(Urc):
    """A known-unsolicited line that carries nothing the agent acts on (Huawei ``^BOOT``,
    other ``^`` reports, ``+CGEV``, time zone reports): ``name`` and its arguments."""

    name: str
    arguments: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownUrc(Urc):
    """A line no command asked for and no known prefix explains."""


# -- recognition -------------------------------------------------------------------------

WORD_URCS: dict[str, Callable[[str], Urc]] = {
    **{
        marker.value.upper(): (lambda line, m=marker: BootIndication(line=line, marker=m))
        for marker in BootMarker
    },
    "RING": lambda line: Ring(line=line),
    "NO CARRIER": lambda line: CallEnded(line=line),
    **{
        text: (lambda line, c=condition: PowerEvent(line=line, condition=c))
        for text, condition in (
            ("UNDER-VOLTAGE WARNNING", PowerCondition.UNDER_VOLTAGE_WARNING),
            ("UNDER-VOLTAGE WARNING", PowerCondition.UNDER_VOLTAGE_WARNING),
            ("UNDER-VOLTAGE POWER DOWN", PowerCondition.UNDER_VOLTAGE_POWER_DOWN),
            ("OVER-VOLTAGE WARNNING", PowerCondition.OVER_VOLTAGE_WARNING),
            ("OVER-VOLTAGE WARNING", PowerCondition.OVER_VOLTAGE_WARNING),
            ("OVER-VOLTAGE POWER DOWN", PowerCondition.OVER_VOLTAGE_POWER_DOWN),
            ("NORMAL POWER DOWN", PowerCondition.NORMAL_POWER_DOWN),
            ("POWERED DOWN", PowerCondition.NORMAL_POWER_DOWN),
        )
    },
}

# URCs whose PDU follows on the next line (PDU mode).
TWO_LINE_URCS = frozenset({"+CMT", "+CDS", "+CBM"})

# Reports that are only ever unsolicited and carry nothing the agent acts on.
OTHER_INDICATIONS = frozenset(
    {"+CGEV", "+CTZV", "+CTZE", "+CIEV", "*PSUTTZ", "*PSNWID", "DST", "+QNITZ", "+CSMINS", "+CSQN"}
)


def _args(line: str, name: str, minimum: int, maximum: int) -> list[str]:
    arguments = split_arguments(strip_prefix(line, name), line)
    if not minimum <= len(arguments) <= maximum:
        raise AtParseError(f"{name}: expected {minimum}..{maximum} fields in {line!r}", line)
    return arguments


def _number(text: str, line: str, field: str) -> int:
    if not is_digits(text.strip()):
        raise AtParseError(f"{field} {text!r} is not a number in {line!r}", line)
    return int(text)


def _stored(line: str, name: str) -> tuple[str, int]:
    storage, index = _args(line, name, 2, 2)
    return storage, _number(index, line, "index")


def _cmti(line: str) -> Urc:
    storage, index = _stored(line, "+CMTI")
    return SmsStored(line=line, storage=storage, index=index)


def _cdsi(line: str) -> Urc:
    storage, index = _stored(line, "+CDSI")
    return StatusReportStored(line=line, storage=storage, index=index)


def _registration(line: str) -> Urc:
    return RegistrationChanged(line=line, registration=parse_registration_urc(line))


def _cpin(line: str) -> Urc:
    return SimStatusChanged(line=line, status=pin_status_from_line(line))


def _cfun(line: str) -> Urc:
    return FunctionalityChanged(
        line=line, level=_number(_args(line, "+CFUN", 1, 1)[0], line, "fun")
    )


def _qind(line: str) -> Urc:
    event, *arguments = _args(line, "+QIND", 1, 16)
    return QuectelIndication(line=line, event=event, arguments=tuple(arguments))


def _qusim(line: str) -> Urc:
    return QuectelUsim(line=line, usim=_number(_args(line, "+QUSIM", 1, 1)[0], line, "usim"))


def _rssi(line: str) -> Urc:
    rssi = _number(_args(line, "^RSSI", 1, 1)[0], line, "rssi")
    return SignalChanged(line=line, signal=signal_from_rssi(rssi, line=line))


def _mode(line: str) -> Urc:
    fields = _args(line, "^MODE", 1, 2)
    sysmode = _number(fields[0], line, "sysmode")
    submode = _number(fields[1], line, "submode") if len(fields) == 2 else None
    return HuaweiMode(line=line, sysmode=sysmode, submode=submode)


def _srvst(line: str) -> Urc:
    state = _number(_args(line, "^SRVST", 1, 1)[0], line, "state")
    return HuaweiServiceState(line=line, state=state)


def _simst(line: str) -> Urc:
    fields = _args(line, "^SIMST", 1, 2)
    lock = _number(fields[1], line, "lock") if len(fields) == 2 else None
    return HuaweiSimState(line=line, state=_number(fields[0], line, "state"), lock=lock)


def _smmemfull(line: str) -> Urc:
    return StorageFull(line=line, storage=_args(line, "^SMMEMFULL", 1, 1)[0])


def _cusd(line: str) -> Urc:
    return UssdReceived(line=line, response=parse_cusd([line]))


def _clip(line: str) -> Urc:
    fields = _args(line, "+CLIP", 2, 6)
    kind = _number(fields[1], line, "type") if fields[1] else None
    return CallerId(line=line, number=fields[0], type=kind)


def _vendor(line: str) -> Urc:
    head, _, rest = line.partition(":")
    try:
        arguments = tuple(split_arguments(rest.strip(), line)) if rest.strip() else ()
    except AtParseError:
        arguments = (rest.strip(),)
    return VendorIndication(line=line, name=head.strip().upper(), arguments=arguments)


COLON_URCS: dict[str, Callable[[str], Urc]] = {
    "+CMTI": _cmti,
    "+CDSI": _cdsi,
    "+CREG": _registration,
    "+CGREG": _registration,
    "+CEREG": _registration,
    "+C5GREG": _registration,
    "+CPIN": _cpin,
    "+CFUN": _cfun,
    "+QIND": _qind,
    "+QUSIM": _qusim,
    "^RSSI": _rssi,
    "^MODE": _mode,
    "^SRVST": _srvst,
    "^SIMST": _simst,
    "^SMMEMFULL": _smmemfull,
    "+CUSD": _cusd,
    "+CLIP": _clip,
    **dict.fromkeys(OTHER_INDICATIONS, _vendor),
}


def urc_name(line: str) -> str | None:
    """The URC name ``line`` starts with (``+CMTI``, ``RDY``, ``^BOOT``), or None.

    Every ``^NAME:`` line counts: Huawei prints all of its reports that way, and the
    framer still treats one as an answer when ``AT^NAME`` is the pending command.
    """
    text = line.strip()
    if text.upper() in WORD_URCS:
        return text.upper()
    head, colon, _ = text.partition(":")
    if not colon:
        return None
    name = head.strip().upper()
    if name in COLON_URCS or name in TWO_LINE_URCS:
        return name
    if name.startswith("^") and len(name) > 1 and name[1:].isascii() and name[1:].isalnum():
        return name
    return None


def parse_urc(line: str) -> Urc:
    """The typed event for a one-line URC (``urc_name(line)`` is not None).

    Raises AtParseError naming the line when the prefix is known but the rest is not in
    the form the prefix promises.
    """
    name = urc_name(line)
    if name is None or name in TWO_LINE_URCS:
        raise AtParseError(f"not a one-line URC: {line!r}", line)
    if name in WORD_URCS:
        return WORD_URCS[name](line.strip())
    return COLON_URCS.get(name, _vendor)(line.strip())


def _length(text: str, line: str) -> int:
    return _number(text, line, "length")


def parse_pdu_urc(header: str, pdu_line: str) -> Urc:
    """The typed event for a two-line URC: ``+CMT``/``+CDS``/``+CBM`` header and its PDU.

    PDU mode only: a text mode ``+CMT`` header raises AtParseError naming it.
    """
    name = urc_name(header)
    pdu = pdu_line.strip()
    joined = f"{header.strip()}\n{pdu}"
    if len(pdu) % 2 or not all(char in "0123456789abcdefABCDEF" for char in pdu) or not pdu:
        raise AtParseError(f"{name}: the line after the header is not a PDU: {pdu!r}", joined)
    if name == "+CMT":
        fields = _args(header, "+CMT", 1, 2)
        alpha = fields[0] or None if len(fields) == 2 else None
        return SmsReceived(
            line=joined, alpha=alpha, length=_length(fields[-1], header), pdu_hex=pdu.upper()
        )
    if name == "+CDS":
        length = _length(_args(header, "+CDS", 1, 1)[0], header)
        return StatusReportReceived(line=joined, length=length, pdu_hex=pdu.upper())
    if name == "+CBM":
        length = _length(_args(header, "+CBM", 1, 1)[0], header)
        return BroadcastReceived(line=joined, length=length, pdu_hex=pdu.upper())
    raise AtParseError(f"not a two-line URC: {header!r}", joined)
