"""Typed parsers for the information lines of AT command responses.

Each parser takes the information lines of one response (as the framer hands them up,
without echo and final result code) and returns a frozen dataclass. A line that does not
have the form its prefix promises raises :class:`agent.errors.AtParseError` naming the
line and keeping it as ``raw``; nothing else escapes a parser.

Vendor variants met in the field are accepted where the meaning is clear (see each
parser); values the standard leaves open (a new access technology number) are kept as
numbers rather than rejected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from agent.errors import AtParseError
from agent.protocol import gsm7
from agent.protocol.results import ResultKind

_HEX = re.compile(r"[0-9A-Fa-f]+")


# -- shared helpers ----------------------------------------------------------------------


def split_arguments(text: str, line: str | None = None) -> list[str]:
    """The comma-separated arguments of ``text``, quotes removed, quoted commas kept.

    ``+CNUM: "Smith, J","+7916...",145`` has three arguments. An unclosed quote raises
    AtParseError naming ``line`` (the whole line, for the error message).
    """
    arguments: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            arguments.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if quoted:
        raise AtParseError(f"unclosed quote in {line or text!r}", line or text)
    arguments.append("".join(current).strip())
    return arguments


def strip_prefix(line: str, prefix: str) -> str:
    """What follows ``prefix:`` on ``line`` (case-insensitive); AtParseError if absent."""
    head, colon, rest = line.partition(":")
    if not colon or head.strip().upper() != prefix.upper():
        raise AtParseError(f"expected a {prefix}: line, got {line!r}", line)
    return rest.strip()


def is_digits(text: str) -> bool:
    """True for a non-empty run of ASCII digits (``str.isdigit`` also accepts "²")."""
    return text.isascii() and text.isdigit()


def _content(lines: Sequence[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip()]


def split_chained(lines: Sequence[str], prefixes: Sequence[str]) -> dict[str, list[str]]:
    """The answer to a chained line (``AT+CSQ;+CREG?``) cut into each command's lines.

    V.250 answers ``;``-chained commands with their information lines in order and one
    final result code, so each line is given to the prefix it starts with. A line that
    starts with none of ``prefixes`` raises AtParseError: the caller cannot tell whose it is.
    """
    answers: dict[str, list[str]] = {prefix: [] for prefix in prefixes}
    for line in _content(lines):
        head = line.partition(":")[0].strip().upper()
        if head not in answers:
            raise AtParseError(f"chained answer: {line!r} answers none of {prefixes}", line)
        answers[head].append(line)
    return answers


def _one_line(lines: Sequence[str], what: str) -> str:
    content = _content(lines)
    if len(content) != 1:
        raise AtParseError(
            f"{what}: expected one information line, got {len(content)}: {content!r}",
            "\n".join(content),
        )
    return content[0]


def _int(text: str, line: str, field: str, low: int | None = None, high: int | None = None) -> int:
    value = text.strip()
    if not is_digits(value):
        raise AtParseError(f"{field} {value!r} is not a number in {line!r}", line)
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise AtParseError(f"{field} {number} is outside {low}..{high} in {line!r}", line)
    return number


def _optional_int(text: str, line: str, field: str) -> int | None:
    return _int(text, line, field) if text.strip() else None


def _arguments(line: str, prefix: str, minimum: int, maximum: int | None = None) -> list[str]:
    arguments = split_arguments(strip_prefix(line, prefix), line)
    if len(arguments) < minimum or (maximum is not None and len(arguments) > maximum):
        expected = f"{minimum}" if maximum == minimum else f"{minimum}..{maximum or 'n'}"
        raise AtParseError(
            f"{prefix}: expected {expected} arguments, got {len(arguments)} in {line!r}", line
        )
    return arguments


def luhn_valid(digits: str) -> bool:
    """True when the last digit of ``digits`` is the Luhn check digit of the rest."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# -- +CSQ / signal -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalQuality:
    """+CSQ (27.007 8.5): ``rssi`` 0..31 or 99 (unknown), ``ber`` 0..7 or 99."""

    rssi: int
    ber: int = 99

    @property
    def dbm(self) -> int | None:
        """Received power: -113 dBm for 0, 2 dBm a step, -51 dBm or more for 31."""
        return None if self.rssi == 99 else -113 + 2 * self.rssi

    @property
    def bars(self) -> int | None:
        """0..5 bars, a step every 10 dB from -111 dBm (rssi 1) up; None when unknown."""
        if self.rssi == 99:
            return None
        return min(5, (self.rssi + 3) // 5) if self.rssi > 1 else 0


def signal_from_rssi(rssi: int, ber: int = 99, line: str = "") -> SignalQuality:
    """A SignalQuality after checking the ranges (shared with Huawei's ^RSSI URC)."""
    if not (0 <= rssi <= 31 or rssi == 99):
        raise AtParseError(f"rssi {rssi} is not 0..31 or 99 in {line!r}", line)
    if not (0 <= ber <= 7 or ber == 99):
        raise AtParseError(f"ber {ber} is not 0..7 or 99 in {line!r}", line)
    return SignalQuality(rssi, ber)


def parse_csq(lines: Sequence[str]) -> SignalQuality:
    """``+CSQ: 20,99``."""
    line = _one_line(lines, "+CSQ")
    rssi, ber = _arguments(line, "+CSQ", 2, 2)
    return signal_from_rssi(_int(rssi, line, "rssi"), _int(ber, line, "ber"), line)


# -- +CREG / +CGREG / +CEREG -------------------------------------------------------------


class Registration(IntEnum):
    """<stat> of +CREG/+CGREG/+CEREG (27.007 7.2, 10.1.20, 10.1.22)."""

    NOT_REGISTERED = 0
    HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    ROAMING = 5
    SMS_ONLY_HOME = 6
    SMS_ONLY_ROAMING = 7
    EMERGENCY_ONLY = 8
    CSFB_NOT_PREFERRED_HOME = 9
    CSFB_NOT_PREFERRED_ROAMING = 10
    RLOS_ONLY = 11

    @property
    def registered(self) -> bool:
        """Registered with service SMS can use (home or roaming, "SMS only" included)."""
        return self in _REGISTERED


_REGISTERED = frozenset(
    {
        Registration.HOME,
        Registration.ROAMING,
        Registration.SMS_ONLY_HOME,
        Registration.SMS_ONLY_ROAMING,
        Registration.CSFB_NOT_PREFERRED_HOME,
        Registration.CSFB_NOT_PREFERRED_ROAMING,
    }
)

REGISTRATION_PREFIXES = ("+CREG", "+CGREG", "+CEREG", "+C5GREG")


@dataclass(frozen=True, slots=True)
class RegistrationStatus:
    """Network registration of one domain (``+CREG`` circuit, ``+CGREG`` GPRS, ``+CEREG``
    EPS). ``mode`` is the reporting mode <n> of a query answer (None in a URC); ``area``
    and ``cell`` the LAC/TAC and cell id in hex as given; ``act`` the access technology
    number (7 is LTE) when reported."""

    domain: str
    status: Registration
    mode: int | None = None
    area: str | None = None
    cell: str | None = None
    act: int | None = None

    @property
    def registered(self) -> bool:
        """True when registered (see :attr:`Registration.registered`)."""
        return self.status.registered


def _registration(
    line: str, arguments: list[str], domain: str, mode: int | None
) -> RegistrationStatus:
    stat = _int(arguments[0], line, "stat")
    try:
        status = Registration(stat)
    except ValueError:
        raise AtParseError(f"registration status {stat} is unknown in {line!r}", line) from None
    rest = arguments[1:]
    if len(rest) == 1:
        raise AtParseError(f"{domain}: area without cell in {line!r}", line)
    area = (rest[0].upper() or None) if rest else None
    cell = (rest[1].upper() or None) if rest else None
    for name, value in (("area", area), ("cell", cell)):
        if value is not None and not _HEX.fullmatch(value):
            raise AtParseError(f"{domain}: {name} {value!r} is not hex in {line!r}", line)
    act = _optional_int(rest[2], line, "act") if len(rest) > 2 else None
    return RegistrationStatus(domain.lstrip("+"), status, mode, area, cell, act)


def _registration_prefix(line: str) -> str:
    head = line.partition(":")[0].strip().upper()
    if head not in REGISTRATION_PREFIXES:
        raise AtParseError(f"not a registration line: {line!r}", line)
    return head


def parse_registration(lines: Sequence[str]) -> RegistrationStatus:
    """The answer to ``AT+CREG?``/``+CGREG?``/``+CEREG?``: ``n,stat[,lac,ci[,act,...]]``.

    Fields after <act> (+CGREG's rac, +CEREG's reject cause) are ignored.
    """
    line = _one_line(lines, "registration")
    prefix = _registration_prefix(line)
    arguments = _arguments(line, prefix, 2)
    mode = _int(arguments[0], line, "n")
    return _registration(line, arguments[1:], prefix, mode)


def parse_registration_urc(line: str) -> RegistrationStatus:
    """The unsolicited form ``+CREG: stat[,lac,ci[,act]]`` (the framer tells the forms
    apart by the pending command, never by the number of fields)."""
    prefix = _registration_prefix(line)
    return _registration(line, _arguments(line, prefix, 1), prefix, None)


# -- +COPS -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkOperator:
    """``+COPS?`` (27.007 7.3): selection ``mode``; ``format`` 0 long, 1 short, 2 numeric
    name; ``name`` of the serving network; ``act`` access technology."""

    mode: int
    format: int | None = None
    name: str | None = None
    act: int | None = None

    @property
    def mcc_mnc(self) -> tuple[str, str] | None:
        """(MCC, MNC) when the name is numeric ("25001" -> ("250", "01"))."""
        if self.format == 2 and self.name and is_digits(self.name) and len(self.name) in (5, 6):
            return self.name[:3], self.name[3:]
        return None


def parse_cops(lines: Sequence[str]) -> NetworkOperator:
    """``+COPS: 0,0,"MTS RUS",7``, ``+COPS: 0,2,"25001",7`` or ``+COPS: 0`` (no network)."""
    line = _one_line(lines, "+COPS")
    arguments = _arguments(line, "+COPS", 1, 4)
    mode = _int(arguments[0], line, "mode", 0, 4)
    if len(arguments) == 1:
        return NetworkOperator(mode)
    if len(arguments) == 2:
        raise AtParseError(f"+COPS: format without operator in {line!r}", line)
    fmt = _int(arguments[1], line, "format", 0, 2)
    name = arguments[2] or None
    act = _optional_int(arguments[3], line, "act") if len(arguments) == 4 else None
    return NetworkOperator(mode, fmt, name, act)


# -- +CPIN -------------------------------------------------------------------------------


class PinStatus(StrEnum):
    """<code> of +CPIN (27.007 8.3), plus the SIM800/Quectel ``NOT INSERTED``/``NOT READY``."""

    READY = "READY"
    SIM_PIN = "SIM PIN"
    SIM_PUK = "SIM PUK"
    SIM_PIN2 = "SIM PIN2"
    SIM_PUK2 = "SIM PUK2"
    PH_SIM_PIN = "PH-SIM PIN"
    PH_FSIM_PIN = "PH-FSIM PIN"
    PH_FSIM_PUK = "PH-FSIM PUK"
    PH_NET_PIN = "PH-NET PIN"
    PH_NET_PUK = "PH-NET PUK"
    PH_NETSUB_PIN = "PH-NETSUB PIN"
    PH_NETSUB_PUK = "PH-NETSUB PUK"
    PH_SP_PIN = "PH-SP PIN"
    PH_SP_PUK = "PH-SP PUK"
    PH_CORP_PIN = "PH-CORP PIN"
    PH_CORP_PUK = "PH-CORP PUK"
    NOT_INSERTED = "NOT INSERTED"
    NOT_READY = "NOT READY"


def pin_status_from_line(line: str) -> PinStatus:
    """The status of one ``+CPIN: ...`` line (answer or URC)."""
    value = " ".join(strip_prefix(line, "+CPIN").strip('"').upper().split())
    try:
        return PinStatus(value)
    except ValueError:
        raise AtParseError(f"+CPIN: unknown status {value!r} in {line!r}", line) from None


def parse_cpin(lines: Sequence[str]) -> PinStatus:
    """``+CPIN: READY`` / ``+CPIN: SIM PIN`` / ``+CPIN: NOT INSERTED``."""
    return pin_status_from_line(_one_line(lines, "+CPIN"))


# What a failed ``AT+CPIN?`` says about the SIM, by the error's kind and code. Most modems
# answer a missing SIM with an error instead of a status line. The same SIM conditions have
# a +CME code (27.007 9.2.1: 10 not inserted, 11 PIN, 12 PUK, 13 failure, 14 busy, 15
# wrong, 17 PIN2, 18 PUK2, 5 PH-SIM PIN) and a +CMS code (27.005 3.2.5: 310 not inserted,
# 311 PIN, 312 PH-SIM PIN, 313 failure, 314 busy, 315 wrong, 316 PUK, 317 PIN2, 318 PUK2);
# firmware uses either. A failed or wrong SIM has no +CPIN status: absent from the map.
SIM_ERROR_STATUS: dict[tuple[ResultKind, int], PinStatus] = {
    (ResultKind.CME, 10): PinStatus.NOT_INSERTED,
    (ResultKind.CMS, 310): PinStatus.NOT_INSERTED,
    (ResultKind.CME, 14): PinStatus.NOT_READY,
    (ResultKind.CMS, 314): PinStatus.NOT_READY,
    (ResultKind.CME, 11): PinStatus.SIM_PIN,
    (ResultKind.CMS, 311): PinStatus.SIM_PIN,
    (ResultKind.CME, 12): PinStatus.SIM_PUK,
    (ResultKind.CMS, 316): PinStatus.SIM_PUK,
    (ResultKind.CME, 5): PinStatus.PH_SIM_PIN,
    (ResultKind.CMS, 312): PinStatus.PH_SIM_PIN,
    (ResultKind.CME, 17): PinStatus.SIM_PIN2,
    (ResultKind.CMS, 317): PinStatus.SIM_PIN2,
    (ResultKind.CME, 18): PinStatus.SIM_PUK2,
    (ResultKind.CMS, 318): PinStatus.SIM_PUK2,
}


def pin_status_from_failure(kind: str, code: int | None) -> PinStatus | None:
    """The SIM status a failed ``AT+CPIN?`` gives (``kind`` "CME"/"CMS", as
    :class:`agent.errors.CommandFailed` carries it); None when the error says none."""
    if code is None or kind not in (ResultKind.CME, ResultKind.CMS):
        return None
    return SIM_ERROR_STATUS.get((ResultKind(kind), code))


# -- +CPMS -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorageUsage:
    """One message storage: ``storage`` ("SM", "ME", "MT"; None in a set answer, where the
    modem does not repeat the names), messages ``used`` of ``total`` slots."""

    storage: str | None
    used: int
    total: int

    @property
    def full(self) -> bool:
        """No free slot: the network keeps SMS for later and the SIM stops receiving."""
        return self.used >= self.total


def parse_cpms_query(lines: Sequence[str]) -> tuple[StorageUsage, ...]:
    """``+CPMS: "SM",3,30,"SM",3,30,"SM",3,30`` (mem1, mem2, mem3; some modems give fewer)."""
    line = _one_line(lines, "+CPMS")
    arguments = _arguments(line, "+CPMS", 3, 9)
    if len(arguments) % 3:
        raise AtParseError(f"+CPMS: expected triples of mem,used,total in {line!r}", line)
    usages = []
    for start in range(0, len(arguments), 3):
        storage, used, total = arguments[start : start + 3]
        if not storage or is_digits(storage):
            raise AtParseError(f"+CPMS: storage name missing in {line!r}", line)
        usages.append(StorageUsage(storage, _int(used, line, "used"), _int(total, line, "total")))
    return tuple(usages)


# One parenthesised list of a test answer, and one quoted name in it; bounded, so a long
# line of garbage cannot make either slow.
_CPMS_LIST = re.compile(r"\(([^()]{0,200})\)")
_CPMS_NAME = re.compile(r'"([A-Z_]{1,8})"')


def parse_cpms_support(lines: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """``AT+CPMS=?``: ``+CPMS: ("SM","ME","MT"),("SM","ME"),("SM","ME")``, the storages
    each of mem1, mem2 and mem3 may be (27.005 3.2.2)."""
    line = _one_line(lines, "+CPMS")
    lists = _CPMS_LIST.findall(strip_prefix(line, "+CPMS"))
    supported = tuple(tuple(_CPMS_NAME.findall(names.upper())) for names in lists)
    if not supported or not supported[0]:
        raise AtParseError(f"+CPMS: expected lists of storages in {line!r}", line)
    return supported


# -- +CMGL / +CMGR (PDU mode) ------------------------------------------------------------


class MessageStatus(IntEnum):
    """<stat> of a stored message in PDU mode (27.005 3.1); text mode names map to these."""

    RECEIVED_UNREAD = 0
    RECEIVED_READ = 1
    STORED_UNSENT = 2
    STORED_SENT = 3
    ALL = 4


_STATUS_TEXT = {
    "REC UNREAD": MessageStatus.RECEIVED_UNREAD,
    "REC READ": MessageStatus.RECEIVED_READ,
    "STO UNSENT": MessageStatus.STORED_UNSENT,
    "STO SENT": MessageStatus.STORED_SENT,
    "ALL": MessageStatus.ALL,
}


@dataclass(frozen=True, slots=True)
class StoredPdu:
    """A message read from storage: ``index`` (None for +CMGR, where the caller knows it),
    ``status``, TPDU ``length`` in octets as the modem states it, and the PDU (SMSC address
    then TPDU) in upper-case hex, to hand to ``agent.protocol.pdu``."""

    index: int | None
    status: MessageStatus
    length: int
    pdu_hex: str
    alpha: str | None = None


def _status(text: str, line: str) -> MessageStatus:
    if is_digits(text):
        try:
            return MessageStatus(int(text))
        except ValueError:
            raise AtParseError(f"message status {text} is unknown in {line!r}", line) from None
    status = _STATUS_TEXT.get(text.upper())
    if status is None:
        raise AtParseError(f"message status {text!r} is unknown in {line!r}", line)
    return status


def _pdu_line(line: str, header: str) -> str:
    if len(line) % 2 or not _HEX.fullmatch(line):
        raise AtParseError(f"expected the PDU in hex after {header!r}, got {line!r}", line)
    return line.upper()


def parse_cmgl(lines: Sequence[str]) -> list[StoredPdu]:
    """``+CMGL: idx,stat,[alpha],length`` each followed by its PDU line; none is fine."""
    content = _content(lines)
    messages: list[StoredPdu] = []
    for position in range(0, len(content), 2):
        header = content[position]
        index, stat, alpha, length = _arguments(header, "+CMGL", 4, 4)
        if position + 1 >= len(content):
            raise AtParseError(f"+CMGL: no PDU line after {header!r}", header)
        messages.append(
            StoredPdu(
                _int(index, header, "index"),
                _status(stat, header),
                _int(length, header, "length"),
                _pdu_line(content[position + 1], header),
                alpha or None,
            )
        )
    return messages


def parse_cmgr(lines: Sequence[str]) -> StoredPdu | None:
    """``+CMGR: stat,[alpha],length`` and the PDU line; None for an empty index, which
    modems answer with no line at all or with ``+CMGR: 0,,0`` and no PDU."""
    content = _content(lines)
    if not content:
        return None
    header = content[0]
    stat, alpha, length = _arguments(header, "+CMGR", 3, 3)
    octets = _int(length, header, "length")
    if len(content) == 1 and octets == 0:
        return None
    if len(content) != 2:
        raise AtParseError(f"+CMGR: expected a header and one PDU line, got {content!r}", header)
    return StoredPdu(
        None, _status(stat, header), octets, _pdu_line(content[1], header), alpha or None
    )


def parse_cmgs(lines: Sequence[str]) -> int:
    """``+CMGS: <mr>``: the message reference of a sent SMS (an ack PDU may follow)."""
    line = _one_line(lines, "+CMGS")
    return _int(_arguments(line, "+CMGS", 1, 2)[0], line, "message reference", 0, 255)


# -- +CNUM -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnNumber:
    """One ``+CNUM`` entry: ``number`` as stored, its TON/NPI ``type`` (145 international,
    129 unknown/national) and the optional ``alpha`` label."""

    number: str
    type: int | None = None
    alpha: str | None = None

    @property
    def international(self) -> str:
        """The number with a leading ``+`` when its type says international."""
        if self.type == 145 and not self.number.startswith("+"):
            return "+" + self.number
        return self.number


def parse_cnum(lines: Sequence[str]) -> list[OwnNumber]:
    """Zero or more ``+CNUM: ["alpha"],"number",type[,...]`` lines; also ``+CNUM: "n",type``
    without the alpha field and ``+CNUM: "alpha","n"`` without the type, as some firmware
    prints them."""
    numbers = []
    for line in _content(lines):
        arguments = _arguments(line, "+CNUM", 2)
        if len(arguments) == 2 and is_digits(arguments[1]):
            alpha, number, kind = "", arguments[0], arguments[1]
        elif len(arguments) == 2:
            alpha, number, kind = arguments[0], arguments[1], ""
        else:
            alpha, number, kind = arguments[:3]
        if not re.fullmatch(r"\+?[0-9*#]+", number):
            raise AtParseError(f"+CNUM: {number!r} is not a phone number in {line!r}", line)
        numbers.append(OwnNumber(number, _optional_int(kind, line, "type"), alpha or None))
    return numbers


# -- +CUSD -------------------------------------------------------------------------------


class UssdStatus(IntEnum):
    """<m> of +CUSD (27.007 7.15)."""

    DONE = 0
    ACTION_REQUIRED = 1
    TERMINATED = 2
    OTHER_CLIENT = 3
    NOT_SUPPORTED = 4
    TIMEOUT = 5


class UssdEncoding(StrEnum):
    """How the answer's string was read (so a person can see which guess was made)."""

    NONE = "none"
    TEXT = "text"
    GSM7_PACKED_HEX = "gsm7-packed-hex"
    UCS2_HEX = "ucs2-hex"
    OCTETS_HEX = "octets-hex"


@dataclass(frozen=True, slots=True)
class UssdResponse:
    """A USSD answer: ``status``, decoded ``text`` (None when the network sent none),
    the data coding scheme ``dcs``, the ``raw`` string as received and how it was read."""

    status: UssdStatus
    text: str | None = None
    dcs: int | None = None
    raw: str | None = None
    encoding: UssdEncoding = UssdEncoding.NONE


def _cbs_alphabet(dcs: int | None) -> str:
    """The alphabet a CBS data coding scheme (23.038 5) names: gsm7, ucs2 or 8bit."""
    if dcs is None:
        return "gsm7"
    if dcs == 0x11:
        return "ucs2"
    if 0x40 <= dcs <= 0x7F or 0x90 <= dcs <= 0x9F:
        return {0x00: "gsm7", 0x04: "8bit", 0x08: "ucs2"}.get(dcs & 0x0C, "gsm7")
    if dcs >= 0xF0:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"


def _printable(text: str) -> bool:
    return all(char.isprintable() or char in "\r\n" for char in text)


def _looks_ucs2(octets: bytes) -> bool:
    """UCS2 of Latin or Cyrillic text: every high octet 0x00 or 0x04, all printable."""
    if any(high not in (0x00, 0x04) for high in octets[::2]):
        return False
    return _printable(octets.decode("utf-16-be"))


def _unpack_gsm7(octets: bytes) -> str:
    count = len(octets) * 8 // 7
    septets = gsm7.unpack_septets(octets, count)
    # 23.038 6.1.2.3.1: when 7 spare bits remain, the sender fills them with CR (some
    # with zero); either is padding, not text.
    if count and count % 8 == 0 and septets[-1] in (0x0D, 0x00):
        septets = septets[:-1]
    return gsm7.decode_septets(septets)


def decode_ussd_string(string: str, dcs: int | None) -> tuple[str, UssdEncoding]:
    """Decode a +CUSD string, deciding by the DCS *and* by what the string looks like.

    Firmware differs: some give GSM 7-bit answers packed as hex, some as plain text, and
    a modem with ``AT+CSCS="UCS2"`` re-encodes every answer as UCS2 hex whatever the DCS.
    The heuristic, in order:

    1. not an even-length hex string: plain text as given;
    2. DCS says UCS2: UTF-16BE of the hex (plain text if that does not decode);
    3. DCS says 8-bit: the octets as Latin-1;
    4. DCS says GSM 7-bit (or is absent): UCS2 hex when the length is a multiple of four
       and every high octet is 0x00 or 0x04 (Latin/Cyrillic), giving printable text;
       plain text when all characters are decimal digits (a balance or a phone number,
       which packed text practically never is); else packed GSM 7-bit.
    """
    if len(string) % 2 or not _HEX.fullmatch(string):
        return string, UssdEncoding.TEXT
    octets = bytes.fromhex(string)
    alphabet = _cbs_alphabet(dcs)
    if alphabet == "ucs2":
        if len(octets) % 2 == 0:
            try:
                return octets.decode("utf-16-be"), UssdEncoding.UCS2_HEX
            except UnicodeDecodeError:
                pass
        return string, UssdEncoding.TEXT
    if alphabet == "8bit":
        return octets.decode("latin-1"), UssdEncoding.OCTETS_HEX
    if len(octets) % 2 == 0 and _looks_ucs2(octets):
        return octets.decode("utf-16-be"), UssdEncoding.UCS2_HEX
    if is_digits(string):
        return string, UssdEncoding.TEXT
    return _unpack_gsm7(octets), UssdEncoding.GSM7_PACKED_HEX


def parse_cusd(lines: Sequence[str]) -> UssdResponse:
    """``+CUSD: m[,"str"[,dcs]]``; the string may span lines (the framer joins them with
    ``\\n``). See :func:`decode_ussd_string` for how the string is read."""
    content = _content(lines)
    if not content:
        raise AtParseError("+CUSD: no line", "")
    line = "\n".join(content)
    arguments = _arguments(line, "+CUSD", 1, 3)
    status = _int(arguments[0], line, "m")
    try:
        ussd_status = UssdStatus(status)
    except ValueError:
        raise AtParseError(f"+CUSD: status {status} is unknown in {line!r}", line) from None
    if len(arguments) == 1:
        return UssdResponse(ussd_status)
    string = arguments[1]
    dcs = _int(arguments[2], line, "dcs", 0, 255) if len(arguments) == 3 else None
    text, encoding = decode_ussd_string(string, dcs)
    return UssdResponse(ussd_status, text, dcs, string, encoding)


# -- identity: ICCID, IMEI, IMSI ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Iccid:
    """A SIM's ICCID (ITU-T E.118): ``digits`` (18..22), and whether the last is a valid
    Luhn check digit. Some issuers' 20-digit ICCIDs carry none, so it is reported, not
    enforced."""

    digits: str
    luhn_valid: bool


def _unswap(hex_string: str) -> str:
    return "".join(hex_string[i + 1] + hex_string[i] for i in range(0, len(hex_string), 2))


def _iccid_from_value(value: str, line: str, swapped: bool) -> Iccid:
    cleaned = value.strip().strip('"').strip().upper()
    if swapped:
        if len(cleaned) % 2 or not _HEX.fullmatch(cleaned):
            raise AtParseError(f"ICCID {cleaned!r} is not BCD in {line!r}", line)
        cleaned = _unswap(cleaned)
    cleaned = cleaned.rstrip("F")
    if not is_digits(cleaned) or not 18 <= len(cleaned) <= 22:
        raise AtParseError(f"ICCID {cleaned!r} is not 18..22 digits in {line!r}", line)
    return Iccid(cleaned, luhn_valid(cleaned))


def parse_iccid(lines: Sequence[str], prefixes: Sequence[str] = ()) -> Iccid:
    """The ICCID in the answer to an ICCID query: a line that starts with one of
    ``prefixes`` (the vendor's answer, e.g. ``+QCCID:``; the vendor profiles in
    agent.modem.vendors say which), a bare line of digits, or the generic
    ``+CRSM: 144,0,"98..."`` (EF_ICCID read raw: BCD, nibbles swapped, F padded).
    Every ICCID starts with 89 (E.118 industry identifier), so a value starting with 98
    is taken as nibble-swapped (Huawei gives it so on some firmware) and swapped back.
    """
    line = _one_line(lines, "ICCID")
    head, colon, rest = line.partition(":")
    prefix = head.strip().upper()
    if colon and prefix == "+CRSM":
        return _iccid_from_crsm(line)
    if colon and prefix in (expected.upper() for expected in prefixes):
        value = rest
    elif not colon:
        value = line
    else:
        raise AtParseError(f"not an ICCID line (expected {', '.join(prefixes)}): {line!r}", line)
    cleaned = value.strip().strip('"').strip().upper()
    return _iccid_from_value(cleaned, line, swapped=cleaned.startswith("98"))


def crsm_response(line: str) -> str:
    """The response data of ``+CRSM: sw1,sw2[,"data"]`` when the SIM said success (90 00 or
    91 xx); a SIM status word of failure raises AtParseError naming it."""
    arguments = _arguments(line, "+CRSM", 2, 3)
    sw1 = _int(arguments[0], line, "sw1", 0, 255)
    sw2 = _int(arguments[1], line, "sw2", 0, 255)
    if sw1 not in (0x90, 0x91):
        raise AtParseError(f"+CRSM: SIM answered status {sw1:02X}{sw2:02X} in {line!r}", line)
    return arguments[2] if len(arguments) == 3 else ""


def _iccid_from_crsm(line: str) -> Iccid:
    return _iccid_from_value(crsm_response(line), line, swapped=True)


@dataclass(frozen=True, slots=True)
class Imei:
    """A modem's IMEI (14 digits, 15 with the Luhn check digit) or IMEISV (16 digits, no
    check digit). ``luhn_valid`` is None when there is no check digit to verify; some
    modem pools report a bogus IMEI, so a failed check is reported, not rejected."""

    digits: str
    luhn_valid: bool | None


def parse_imei(lines: Sequence[str]) -> Imei:
    """``AT+CGSN``/``AT+GSN``: bare digits, ``+CGSN: 86...`` or ``+CGSN: "86..."``."""
    line = _one_line(lines, "IMEI")
    head, colon, rest = line.partition(":")
    if colon and head.strip().upper() not in ("+CGSN", "+GSN", "IMEI"):
        raise AtParseError(f"not an IMEI line: {line!r}", line)
    digits = (rest if colon else line).strip().strip('"').strip()
    if not is_digits(digits) or len(digits) not in (14, 15, 16):
        raise AtParseError(f"IMEI {digits!r} is not 14..16 digits in {line!r}", line)
    return Imei(digits, luhn_valid(digits) if len(digits) == 15 else None)


# ITU-T E.212 assignments where networks use 3-digit MNCs: North America (302 Canada,
# 310-316 USA), Mexico, the Caribbean (338-376), India's 405 (mostly 3-digit since the
# 2000s), Honduras, Argentina, Colombia, Falklands. Everything else uses 2 digits. A SIM
# states its own MNC length in EF_AD too, but reading it costs a command per SIM for
# what this table already answers.
THREE_DIGIT_MNC_MCCS = frozenset(
    {302, 310, 311, 312, 313, 314, 315, 316, 334, 338, 342, 344, 346, 348, 350, 352, 354, 356,
     358, 360, 365, 366, 376, 405, 708, 722, 732, 750}
)  # fmt: skip


def mnc_length_for(mcc: str) -> int:
    """2 or 3: how many digits the MNC has in networks of country code ``mcc``."""
    return 3 if is_digits(mcc) and int(mcc) in THREE_DIGIT_MNC_MCCS else 2


@dataclass(frozen=True, slots=True)
class Imsi:
    """A SIM's IMSI: MCC (3 digits), MNC (2 or 3: :func:`mnc_length_for`), subscriber
    number."""

    digits: str

    @property
    def mcc(self) -> str:
        """The mobile country code."""
        return self.digits[:3]

    @property
    def mnc(self) -> str:
        """The mobile network code, 2 or 3 digits."""
        return self.digits[3 : 3 + mnc_length_for(self.mcc)]

    @property
    def plmn(self) -> str:
        """MCC followed by MNC, as ``+COPS`` numeric format and operator tables key it."""
        return self.mcc + self.mnc


def parse_imsi(lines: Sequence[str]) -> Imsi:
    """``AT+CIMI``: a line of 6..15 digits (some firmware prefixes ``+CIMI:``)."""
    line = _one_line(lines, "+CIMI")
    head, colon, rest = line.partition(":")
    if colon and head.strip().upper() != "+CIMI":
        raise AtParseError(f"not an IMSI line: {line!r}", line)
    digits = (rest if colon else line).strip().strip('"').strip()
    if not is_digits(digits) or not 6 <= len(digits) <= 15:
        raise AtParseError(f"IMSI {digits!r} is not 6..15 digits in {line!r}", line)
    return Imsi(digits)


# -- identification and settings ---------------------------------------------------------

_LABELS = frozenset(
    {"+CGMI", "+CGMM", "+CGMR", "+GMI", "+GMM", "+GMR", "REVISION", "MANUFACTURER", "MODEL"}
)


def parse_text_value(lines: Sequence[str]) -> str:
    """The text of ``AT+CGMI``/``+CGMM``/``+CGMR`` (and ``+GMx``), without a prefix such
    as ``+CGMM: `` or SIM800's ``Revision:``; several lines are joined with a space."""
    values = []
    for line in _content(lines):
        head, colon, rest = line.partition(":")
        value = rest if colon and head.strip().upper() in _LABELS else line
        values.append(value.strip().strip('"').strip())
    text = " ".join(value for value in values if value)
    if not text:
        raise AtParseError(
            f"expected an identification text, got {list(lines)!r}", "\n".join(lines)
        )
    return text


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """``ATI``: what the modem says it is. Labelled lines (Huawei: ``Manufacturer:``,
    ``Model:``, ``Revision:``, ``IMEI:``) fill the fields; other lines with a colon
    (``+GCAP: ...``) are kept only in ``lines``; lines without a colon are taken as
    manufacturer then model (Quectel: ``Quectel`` / ``EC25``), a single one as the model
    (SIM800: ``SIM800 R14.18``). ``lines`` keeps everything as given."""

    manufacturer: str | None
    model: str | None
    revision: str | None
    imei: str | None
    lines: tuple[str, ...]


def parse_ati(lines: Sequence[str]) -> ProductInfo:
    """See :class:`ProductInfo`."""
    content = tuple(_content(lines))
    if not content:
        raise AtParseError("ATI: no information lines", "")
    labelled: dict[str, str] = {}
    plain: list[str] = []
    for line in content:
        head, colon, rest = line.partition(":")
        label = head.strip().upper()
        if colon and label in ("MANUFACTURER", "MODEL", "REVISION", "IMEI"):
            labelled[label] = rest.strip()
        elif not colon:
            plain.append(line)
    if len(plain) >= 2:
        labelled.setdefault("MANUFACTURER", plain[0])
        labelled.setdefault("MODEL", plain[1])
    elif plain:
        labelled.setdefault("MODEL", plain[0])
    return ProductInfo(
        labelled.get("MANUFACTURER"),
        labelled.get("MODEL"),
        labelled.get("REVISION"),
        labelled.get("IMEI"),
        content,
    )


@dataclass(frozen=True, slots=True)
class MessageIndication:
    """``+CNMI?`` (27.005 3.4.1): how new messages are indicated. ``mt`` 1 means
    ``+CMTI`` for stored SMS, 2 direct ``+CMT``; fields the modem omits are None."""

    mode: int
    mt: int | None = None
    bm: int | None = None
    ds: int | None = None
    bfr: int | None = None


def parse_cnmi(lines: Sequence[str]) -> MessageIndication:
    """``+CNMI: 2,1,0,0,0`` (some modems give fewer fields)."""
    line = _one_line(lines, "+CNMI")
    values = [_optional_int(a, line, "field") for a in _arguments(line, "+CNMI", 1, 5)]
    if values[0] is None:
        raise AtParseError(f"+CNMI: mode missing in {line!r}", line)
    mode, *rest = values
    return MessageIndication(mode, *rest)
