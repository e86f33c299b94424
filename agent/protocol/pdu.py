"""SMS PDUs (3GPP TS 23.040 9.2, alphabets of TS 23.038): decode what a modem prints in PDU
mode, and encode the SMS-DELIVER an SMSC would send (for the modem emulator and tests).

Pure: bytes in, frozen dataclasses out, no I/O. Every failure to decode is a
:class:`~agent.errors.PduError` naming the octet offset and the field, with the raw PDU
kept on it; nothing else escapes ``decode``.

Choices where the standards leave room (documented here because callers rely on them):

- UCS2 user data is decoded as UTF-16BE so surrogate pairs (emoji) survive. An odd octet
  count or a lone surrogate does not fail the PDU: the broken code unit becomes U+FFFD and
  ``text_damaged`` is set. The raw ``data`` is kept, so the multipart assembler can join
  the parts' octets first and repair a surrogate pair a sender split across two parts.
- Compressed user data (23.042) is not decompressed: ``text`` is "" and ``compressed`` is
  set; ``data`` holds the octets.
- Reserved DCS coding groups and the reserved alphabet value are read as the GSM 7-bit
  default alphabet, as 23.038 4 asks of a receiving entity.
- A concatenation element whose values are impossible (total 0, seq 0 or beyond total) is
  ignored as 23.040 9.2.3.24.1 asks; the element stays in ``udh``.
- The SCTS year has two digits: 00-99 are 2000-2099. An SCTS that is not a valid time
  (month 13, a non-decimal digit, all zero) is a PduError: the raw PDU stays with the
  caller. With ``salvage=True`` it is a :class:`Problem` instead (see below).
- 8-bit data has no text: ``text`` is "" and ``data`` holds the octets.
- Octets after the user data are ignored (some modems pad the PDU). ``length`` (the
  ``<length>`` of +CMGR/+CMGL/+CMT, TPDU octets) cuts them off before decoding.
- A status report's parameter indicator is read as 23.040 9.2.3.27 asks of a receiver:
  reserved bits ignored, extension octets skipped. When everything from it to the end is
  ``FF`` it is the padding of a SIM record (51.011 10.5.3, 31.102 EF_SMS), not a TP-PI.

Salvage (``decode(..., salvage=True)``, what the agent does with a received SMS): a fault
that leaves the text readable is recorded as a :class:`Problem` on the result instead of
refusing the PDU. Those faults are: an unusable timestamp (``timestamp`` is None; the
caller puts its own receive time there), a time-zone octet that is not decimal, a user
data length beyond 140 octets / 160 septets, user data shorter than its length says (what
is there is decoded), and a header element that overruns its header (the elements before
it are kept, the text after the header is still read). A PDU whose header swallows the
user data, whose structure ends before the user data, or that has no readable text left
is still a PduError. docs/pdu-decoder.md says the same for people.
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import cache

from agent.errors import PduError
from agent.protocol import gsm7

# --- results ------------------------------------------------------------------------------

ADDRESS_TYPES = (
    "unknown",
    "international",
    "national",
    "network_specific",
    "subscriber",
    "alphanumeric",
    "abbreviated",
    "reserved",
)

# 23.038 4, message waiting indication groups: bits 1-0 name what is waiting.
WAITING_KINDS = ("voicemail", "fax", "email", "other")


@dataclass(frozen=True)
class Problem:
    """A fault that salvage decoded around: which field, at which octet, what was wrong."""

    field: str
    offset: int
    message: str

    def __str__(self) -> str:
        return PduError.describe(self.field, self.offset, self.message)


@dataclass(frozen=True)
class Concat:
    """Concatenated SMS element (IEI 0x00 or 0x08): which part of which message."""

    ref: int
    total: int
    seq: int
    ref_bits: int


@dataclass(frozen=True)
class Ports:
    """Application port addressing (IEI 0x04 8-bit or 0x05 16-bit), e.g. WAP push on 2948."""

    destination: int
    source: int
    bits: int


@dataclass(frozen=True)
class InformationElement:
    """One user data header element, kept raw whatever its identifier."""

    iei: int
    data: bytes


@dataclass(frozen=True)
class DataCoding:
    """What the data coding scheme octet says (23.038 4)."""

    encoding: str  # "gsm7" | "ucs2" | "8bit"
    message_class: int | None
    compressed: bool
    auto_delete: bool = False
    waiting: str | None = None  # "voicemail" | "fax" | "email" | "other" for MWI groups
    waiting_active: bool = False
    waiting_store: bool = True  # False for the "discard message" MWI group


@dataclass(frozen=True)
class UserData:
    """The decoded TP-UD: header elements, the text and the octets after the header."""

    text: str
    data: bytes
    udh: tuple[InformationElement, ...]
    concat: Concat | None
    ports: Ports | None
    language_single: int
    language_locking: int
    text_damaged: bool


@dataclass(frozen=True)
class SmsDeliver:
    """An SMS-DELIVER: a message from the network to us (what a reseller sells)."""

    smsc: str | None
    sender: str
    sender_type: str
    pid: int
    dcs: int
    encoding: str
    message_class: int | None
    compressed: bool
    timestamp: datetime | None  # None only when salvage found it unusable
    text: str
    data: bytes  # after the header: octets (8bit, ucs2) or septet values, one per octet (gsm7)
    concat: Concat | None
    sender_ton: int = 0
    sender_npi: int = 0
    more_messages: bool = False  # TP-MMS = 0: the SMSC has more messages waiting
    status_report: bool = False  # TP-SRI
    reply_path: bool = False  # TP-RP
    udhi: bool = False
    udh: tuple[InformationElement, ...] = ()
    ports: Ports | None = None
    language_single: int = 0
    language_locking: int = 0
    waiting: str | None = None
    waiting_active: bool = False
    text_damaged: bool = False
    problems: tuple[Problem, ...] = ()
    type: str = "deliver"


@dataclass(frozen=True)
class SmsSubmit:
    """An SMS-SUBMIT: a message we sent, as stored on the SIM (AT+CMGL lists those too)."""

    smsc: str | None
    message_reference: int
    recipient: str
    recipient_type: str
    pid: int
    dcs: int
    encoding: str
    message_class: int | None
    validity: int | datetime | bytes | None  # relative code, absolute time, enhanced raw
    text: str
    data: bytes
    concat: Concat | None
    status_report_request: bool = False
    reject_duplicates: bool = False
    reply_path: bool = False
    udhi: bool = False
    udh: tuple[InformationElement, ...] = ()
    compressed: bool = False
    text_damaged: bool = False
    language_single: int = 0
    language_locking: int = 0
    ports: Ports | None = None
    problems: tuple[Problem, ...] = ()
    type: str = "submit"


@dataclass(frozen=True)
class SmsStatusReport:
    """An SMS-STATUS-REPORT: the fate of a message we sent (23.040 9.2.2.3)."""

    smsc: str | None
    message_reference: int
    recipient: str
    recipient_type: str
    timestamp: datetime | None  # when the SMSC received the submitted message
    discharge_time: datetime | None  # when it was delivered, or the last attempt
    status: int  # TP-ST: 0x00-0x1F delivered, 0x20-0x3F still trying, 0x40+ failed
    pid: int | None = None
    dcs: int | None = None
    text: str = ""
    data: bytes = b""
    more_messages: bool = False
    encoding: str | None = None  # of the optional user data, when TP-PI announces it
    message_class: int | None = None
    udhi: bool = False
    udh: tuple[InformationElement, ...] = ()
    text_damaged: bool = False
    problems: tuple[Problem, ...] = ()
    type: str = "status_report"

    @property
    def delivered(self) -> bool:
        """TP-ST 0x00-0x1F: the short message was received by the recipient."""
        return self.status < 0x20


Sms = SmsDeliver | SmsSubmit | SmsStatusReport


# --- decoding -----------------------------------------------------------------------------


class _Reader:
    """A cursor over the PDU octets that turns every overrun into a PduError; with
    ``salvage``, :meth:`fault` records what can be decoded around instead of raising."""

    __slots__ = ("pdu", "pos", "problems", "raw", "salvage")

    def __init__(self, pdu: bytes, raw: bytes | str, *, salvage: bool = False) -> None:
        self.pdu = pdu
        self.pos = 0
        self.raw = raw
        self.salvage = salvage
        self.problems: list[Problem] = []

    def error(self, field: str, message: str, offset: int | None = None) -> PduError:
        return PduError(
            message, self.raw, offset=self.pos if offset is None else offset, field=field
        )

    def fault(self, field: str, message: str, offset: int) -> None:
        """A fault the text survives: a PduError when strict, a Problem when salvaging."""
        if not self.salvage:
            raise self.error(field, message, offset)
        self.problems.append(Problem(field, offset, message))

    def rest(self, count: int) -> bytes:
        """Up to ``count`` octets: what is left when the PDU is shorter."""
        chunk = self.pdu[self.pos : self.pos + count]
        self.pos += len(chunk)
        return chunk

    def octet(self, field: str) -> int:
        if self.pos >= len(self.pdu):
            raise self.error(field, f"the PDU ends here ({_octets(len(self.pdu))})")
        value = self.pdu[self.pos]
        self.pos += 1
        return value

    def take(self, count: int, field: str, *, start: int | None = None, what: str = "") -> bytes:
        """``count`` octets; an overrun names the field's ``start`` and its declared length."""
        end = self.pos + count
        if end > len(self.pdu):
            raise self.error(
                field,
                f"{what or f'length {count}'} runs past the end of the PDU "
                f"({_octets(len(self.pdu))})",
                start,
            )
        chunk = self.pdu[self.pos : end]
        self.pos = end
        return chunk


def _octets(count: int) -> str:
    return f"{count} octet" if count == 1 else f"{count} octets"


def _to_bytes(pdu: bytes | str) -> bytes:
    if isinstance(pdu, bytes | bytearray | memoryview):
        return bytes(pdu)
    text = pdu.strip()
    try:
        octets = bytes.fromhex(text)
    except ValueError:
        octets = None
    # fromhex also skips inner whitespace: a length mismatch means it did.
    if octets is not None and 2 * len(octets) == len(text):
        return octets
    bad = next((i for i, char in enumerate(text) if char not in _HEX_DIGITS), None)
    if bad is not None:
        raise PduError(
            f"{text[bad]!r} at character {bad} is not a hex digit",
            pdu,
            offset=bad // 2,
            field="hex",
        )
    raise PduError(
        f"odd number of hex digits ({len(text)}): the last octet is cut",
        pdu,
        offset=len(text) // 2,
        field="hex",
    )


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


_DIGITS = "0123456789*#abc"  # 23.040 9.1.2.3: semi-octets 0xA-0xE; 0xF is the filler
# Octet -> its two digits, low nibble first, the 0xF filler dropped.
_DIGIT_PAIRS = tuple(
    (_DIGITS[octet & 0x0F] if octet & 0x0F != 0x0F else "")
    + (_DIGITS[octet >> 4] if octet >> 4 != 0x0F else "")
    for octet in range(256)
)


def _bcd_digits(octets: bytes, count: int) -> str:
    """``count`` semi-octet digits, low nibble first; 0xF fillers are skipped."""
    return "".join([_DIGIT_PAIRS[octet] for octet in octets])[:count]


def _address(reader: _Reader, field: str) -> tuple[str, int, int]:
    """TP-OA / TP-DA / TP-RA: (address, TON, NPI). The length counts semi-octets."""
    start = reader.pos
    digits = reader.octet(field)
    if digits > 20:
        raise reader.error(field, f"length {digits} exceeds the 20 digits allowed", start)
    toa = reader.octet(field + " type")
    octets = reader.take((digits + 1) // 2, field, start=start, what=f"length {digits}")
    ton = (toa >> 4) & 0x07
    npi = toa & 0x0F
    if ton == 5:
        septets = gsm7.unpack_septets(octets, digits * 4 // 7)
        return gsm7.decode_septets(septets), ton, npi
    number = _bcd_digits(octets, digits)
    return ("+" + number if ton == 1 else number), ton, npi


def _smsc(reader: _Reader) -> str | None:
    """The SMSC address in front of the TPDU: its length counts octets incl. the type."""
    start = reader.pos
    length = reader.octet("smsc length")
    if length == 0:
        return None
    if length > 11:
        raise reader.error("smsc", f"length {length} exceeds the 11 octets allowed", start)
    toa = reader.octet("smsc type")
    octets = reader.take(length - 1, "smsc", start=start, what=f"length {length}")
    number = _bcd_digits(octets, 2 * len(octets))
    return "+" + number if (toa >> 4) & 0x07 == 1 else number


def _scts(reader: _Reader, field: str) -> datetime | None:
    """A 7-octet timestamp: swapped BCD fields and a signed quarter-hour zone. None when
    salvaging a timestamp that is not a time (the fault is on the reader)."""
    start = reader.pos
    octets = reader.take(7, field, start=start, what="a 7-octet timestamp")
    if not any(octets):
        reader.fault(field, "all zero: the network sent no time", start)
        return None
    values = []
    for index, octet in enumerate(octets[:6]):
        low, high = octet & 0x0F, octet >> 4
        if low > 9 or high > 9:
            reader.fault(field, f"octet {octet:02X} is not two decimal digits", start + index)
            return None
        values.append(low * 10 + high)
    zone = octets[6]
    tens, units = zone & 0x07, zone >> 4
    if units > 9:
        reader.fault(field, f"time zone octet {zone:02X} is not decimal", start + 6)
        return None
    quarters = tens * 10 + units
    if zone & 0x08:
        quarters = -quarters
    year, month, day, hour, minute, second = values
    try:
        return datetime(
            2000 + year,
            month,
            day,
            hour,
            minute,
            second,
            tzinfo=_zone(quarters),
        )
    except ValueError as exc:
        reader.fault(field, f"not a valid time ({exc})", start)
        return None


@cache
def _zone(quarters: int) -> timezone:
    return timezone(timedelta(minutes=15 * quarters))


@cache
def _data_coding(dcs: int) -> DataCoding:
    """23.038 4: the coding groups of the TP-DCS octet."""
    group = dcs >> 4
    if group < 0x8:  # general data coding (0x0_-0x3_) or marked for automatic deletion
        alphabet = (dcs >> 2) & 0x03
        return DataCoding(
            encoding=("gsm7", "8bit", "ucs2", "gsm7")[alphabet],
            message_class=dcs & 0x03 if dcs & 0x10 else None,
            compressed=bool(dcs & 0x20),
            auto_delete=bool(dcs & 0x40),
        )
    if group in (0xC, 0xD, 0xE):  # message waiting indication: discard / store / store UCS2
        return DataCoding(
            encoding="ucs2" if group == 0xE else "gsm7",
            message_class=None,
            compressed=False,
            waiting=WAITING_KINDS[dcs & 0x03],
            waiting_active=bool(dcs & 0x08),
            waiting_store=group != 0xC,
        )
    if group == 0xF:  # data coding / message class
        return DataCoding(
            encoding="8bit" if dcs & 0x04 else "gsm7",
            message_class=dcs & 0x03,
            compressed=False,
        )
    # 0x8_-0xB_: reserved coding groups, read as the default alphabet.
    return DataCoding(encoding="gsm7", message_class=None, compressed=False)


def _header(reader: _Reader, udh: bytes, start: int) -> tuple[InformationElement, ...]:
    elements: list[InformationElement] = []
    index = 0
    while index < len(udh):
        if index + 2 > len(udh):
            reader.fault(
                "user data header", "an element is cut by the end of the header", start + index
            )
            break
        iei, length = udh[index], udh[index + 1]
        if index + 2 + length > len(udh):
            # The header's own length still says where the text starts: salvage keeps the
            # elements before this one and reads the text.
            reader.fault(
                "user data header",
                f"element {iei:02X} of length {length} runs past the header ({len(udh)} octets)",
                start + index,
            )
            break
        elements.append(InformationElement(iei, udh[index + 2 : index + 2 + length]))
        index += 2 + length
    return tuple(elements)


def _interpret(
    elements: tuple[InformationElement, ...],
) -> tuple[Concat | None, Ports | None, int, int]:
    concat = ports = None
    single = locking = 0
    for element in elements:
        iei, data = element.iei, element.data
        if iei == 0x00 and len(data) == 3:
            concat = _concat(data[0], data[1], data[2], 8) or concat
        elif iei == 0x08 and len(data) == 4:
            concat = _concat((data[0] << 8) | data[1], data[2], data[3], 16) or concat
        elif iei == 0x04 and len(data) == 2:
            ports = Ports(data[0], data[1], 8)
        elif iei == 0x05 and len(data) == 4:
            ports = Ports((data[0] << 8) | data[1], (data[2] << 8) | data[3], 16)
        elif iei == 0x24 and len(data) == 1:
            single = data[0]
        elif iei == 0x25 and len(data) == 1:
            locking = data[0]
    return concat, ports, single, locking


def _concat(ref: int, total: int, seq: int, bits: int) -> Concat | None:
    if total == 0 or seq == 0 or seq > total:
        return None
    return Concat(ref, total, seq, bits)


def _user_data(reader: _Reader, udhi: bool, coding: DataCoding) -> UserData:
    udl_at = reader.pos
    udl = reader.octet("user data length")
    start = reader.pos
    septets = coding.encoding == "gsm7" and not coding.compressed
    limit, unit = (160, "septets") if septets else (140, "octets")
    if udl > limit:
        reader.fault("user data length", f"{udl} {unit} exceed {limit}", udl_at)
    wanted = (udl * 7 + 7) // 8 if septets else udl
    octets = reader.rest(wanted)
    if len(octets) < wanted:
        reader.fault(
            "user data",
            f"user data length {udl}{' septets' if septets else ''} runs past the end of "
            f"the PDU ({_octets(len(reader.pdu))}); {_octets(len(octets))} are there",
            udl_at,
        )
        if septets:
            udl = min(udl, len(octets) * 8 // 7)
            # 7k octets hold 8k septets, or 8k-1 and seven spare bits (23.038 6.1.2.3.1):
            # since the length lied, a last septet of 0 or CR is taken for the padding.
            whole = octets and len(octets) % 7 == 0 and udl == len(octets) * 8 // 7
            if whole and octets[-1] >> 1 in (0, 13):
                udl -= 1
    elements: tuple[InformationElement, ...] = ()
    header_octets = 0
    if udhi:
        if not octets:
            raise reader.error("user data header", "UDHI is set but user data is empty", start)
        header_octets = octets[0] + 1
        if header_octets > len(octets):
            raise reader.error(
                "user data header",
                f"header length {octets[0]} runs past the user data ({len(octets)} octets)",
                start,
            )
        elements = _header(reader, octets[1:header_octets], start + 1)
    concat, ports, single, locking = _interpret(elements)
    damaged = False
    if coding.compressed:
        data = octets[header_octets:]
        text = ""
    elif coding.encoding == "gsm7":
        skip = (header_octets * 8 + 6) // 7
        if skip > udl:
            raise reader.error(
                "user data header",
                f"header of {header_octets} octets is longer than the {udl} septets of data",
                start,
            )
        septets = gsm7.unpack_septets(octets, udl - skip, skip)
        text = gsm7.decode_septets(septets, locking, single)
        data = septets
    elif coding.encoding == "ucs2":
        data = octets[header_octets:]
        text, damaged = decode_ucs2(data)
    else:
        data = octets[header_octets:]
        text = ""
    return UserData(text, data, elements, concat, ports, single, locking, damaged)


def decode_ucs2(data: bytes) -> tuple[str, bool]:
    """UTF-16BE text of UCS2 user data and whether anything had to be replaced.

    Lone surrogates and a trailing odd octet become U+FFFD instead of failing the message:
    the rest of the text (a one-time code, usually) is still worth having.
    """
    try:
        return data.decode("utf-16-be"), False
    except UnicodeDecodeError:
        return data.decode("utf-16-be", "replace"), True


def decode(
    pdu: bytes | str, *, has_smsc: bool = True, length: int | None = None, salvage: bool = False
) -> Sms:
    """Decode one PDU as AT+CMGR / AT+CMGL / +CMT print it in PDU mode.

    ``pdu`` is the hex string (surrounding whitespace allowed) or the octets.
    ``has_smsc=False`` for PDUs that start directly with the first octet of the TPDU.
    ``length`` is the modem's ``<length>``: the TPDU's octets, SMSC field not counted;
    octets beyond it (SIM record padding) are cut off, fewer are decoded as they are.
    ``salvage=True`` decodes around the faults listed in this module's docstring and
    lists them in ``problems``.
    Raises PduError (offset, field, raw) for anything that does not decode.
    """
    octets = _to_bytes(pdu)
    if length is not None:
        if length < 0:
            raise ValueError(f"length must not be negative, not {length}")
        smsc_octets = 1 + octets[0] if has_smsc and octets else 0
        octets = octets[: smsc_octets + length]
    reader = _Reader(octets, pdu, salvage=salvage)
    smsc = _smsc(reader) if has_smsc else None
    first = reader.octet("first octet")
    kind = first & 0x03
    sms: Sms
    if kind == 0:
        sms = _deliver(reader, smsc, first)
    elif kind == 1:
        sms = _submit(reader, smsc, first)
    elif kind == 2:
        sms = _status_report(reader, smsc, first)
    else:
        raise reader.error(
            "first octet", f"{first:02X}: message type 3 is reserved", reader.pos - 1
        )
    if not reader.problems:
        return sms
    if not sms.text and not sms.data and sms.type != "status_report":
        # Salvage has nothing to forward: refuse with the first fault, which is why.
        first_fault = reader.problems[0]
        raise reader.error(
            first_fault.field,
            f"{first_fault.message}; no readable text is left",
            first_fault.offset,
        )
    return replace(sms, problems=tuple(reader.problems))


def _deliver(reader: _Reader, smsc: str | None, first: int) -> SmsDeliver:
    sender, ton, npi = _address(reader, "originating address")
    pid = reader.octet("protocol identifier")
    dcs = reader.octet("data coding scheme")
    coding = _data_coding(dcs)
    timestamp = _scts(reader, "service centre timestamp")
    udhi = bool(first & 0x40)
    ud = _user_data(reader, udhi, coding)
    return SmsDeliver(
        smsc=smsc,
        sender=sender,
        sender_type=ADDRESS_TYPES[ton],
        pid=pid,
        dcs=dcs,
        encoding=coding.encoding,
        message_class=coding.message_class,
        compressed=coding.compressed,
        timestamp=timestamp,
        text=ud.text,
        data=ud.data,
        concat=ud.concat,
        sender_ton=ton,
        sender_npi=npi,
        more_messages=not first & 0x04,
        status_report=bool(first & 0x20),
        reply_path=bool(first & 0x80),
        udhi=udhi,
        udh=ud.udh,
        ports=ud.ports,
        language_single=ud.language_single,
        language_locking=ud.language_locking,
        waiting=coding.waiting,
        waiting_active=coding.waiting_active,
        text_damaged=ud.text_damaged,
    )


def _submit(reader: _Reader, smsc: str | None, first: int) -> SmsSubmit:
    reference = reader.octet("message reference")
    recipient, ton, _npi = _address(reader, "destination address")
    pid = reader.octet("protocol identifier")
    dcs = reader.octet("data coding scheme")
    coding = _data_coding(dcs)
    validity_format = (first >> 3) & 0x03
    validity: int | datetime | bytes | None = None
    if validity_format == 2:
        validity = reader.octet("validity period")
    elif validity_format == 3:
        validity = _scts(reader, "validity period")
    elif validity_format == 1:
        validity = reader.take(7, "validity period", what="an enhanced validity period")
    udhi = bool(first & 0x40)
    ud = _user_data(reader, udhi, coding)
    return SmsSubmit(
        smsc=smsc,
        message_reference=reference,
        recipient=recipient,
        recipient_type=ADDRESS_TYPES[ton],
        pid=pid,
        dcs=dcs,
        encoding=coding.encoding,
        message_class=coding.message_class,
        validity=validity,
        text=ud.text,
        data=ud.data,
        concat=ud.concat,
        status_report_request=bool(first & 0x20),
        reject_duplicates=bool(first & 0x04),
        reply_path=bool(first & 0x80),
        udhi=udhi,
        udh=ud.udh,
        compressed=coding.compressed,
        text_damaged=ud.text_damaged,
        language_single=ud.language_single,
        language_locking=ud.language_locking,
        ports=ud.ports,
    )


def _status_report(reader: _Reader, smsc: str | None, first: int) -> SmsStatusReport:
    reference = reader.octet("message reference")
    recipient, ton, _npi = _address(reader, "recipient address")
    timestamp = _scts(reader, "service centre timestamp")
    discharge = _scts(reader, "discharge time")
    status = reader.octet("status")
    pid = dcs = None
    coding = ud = None
    # TP-PI and what it announces are optional (23.040 9.2.2.3): absent when the PDU ends,
    # or when all that is left is the FF padding of a SIM record.
    rest = reader.pdu[reader.pos :]
    if rest and rest.count(0xFF) != len(rest):
        indicator = reader.octet("parameter indicator")
        extension = indicator
        while extension & 0x80:  # 9.2.3.27: further TP-PI octets, reserved; skipped
            extension = reader.octet("parameter indicator extension")
        # Bits 3-6 are reserved: a receiver ignores them (9.2.3.27).
        if indicator & 0x01:
            pid = reader.octet("protocol identifier")
        if indicator & 0x02:
            dcs = reader.octet("data coding scheme")
        if indicator & 0x04:
            coding = _data_coding(dcs or 0)
            ud = _user_data(reader, bool(first & 0x40), coding)
    return SmsStatusReport(
        smsc=smsc,
        message_reference=reference,
        recipient=recipient,
        recipient_type=ADDRESS_TYPES[ton],
        timestamp=timestamp,
        discharge_time=discharge,
        status=status,
        pid=pid,
        dcs=dcs,
        text=ud.text if ud else "",
        data=ud.data if ud else b"",
        more_messages=not first & 0x04,
        encoding=coding.encoding if coding else None,
        message_class=coding.message_class if coding else None,
        udhi=bool(first & 0x40),
        udh=ud.udh if ud else (),
        text_damaged=ud.text_damaged if ud else False,
    )


# --- encoding -----------------------------------------------------------------------------

_SHIFTS = ("single", "locking", "both")


def encode_deliver(
    text: str,
    sender: str,
    *,
    timestamp: datetime,
    smsc: str | None = "+79168999100",
    reference: int | None = None,
    ref_bits: int = 8,
    message_class: int | None = None,
    encoding: str | None = None,
    language: str | None = None,
    shift: str = "single",
) -> list[bytes]:
    """The SMS-DELIVER PDUs an SMSC would send for ``text`` from ``sender``.

    GSM 7-bit when the text fits the default alphabet and its extension table (or, with
    ``language`` such as "turkish", that language's shift tables: ``shift`` is "single",
    "locking" or "both", announced in the UDH by IEI 0x24/0x25), else UCS2 as UTF-16BE;
    ``encoding`` ("gsm7" or "ucs2") forces one. Long texts become concatenated parts of
    153 septets / 67 UCS2 units (8-bit reference) or 152 / 66 (16-bit), never cutting an
    escape pair or a surrogate pair. ``reference`` defaults to a hash of the message, so
    the result is reproducible. ``sender`` is international ("+7916..."), national (digits)
    or alphanumeric (up to 11 GSM characters). Each PDU starts with the SMSC field, as
    AT+CMGR prints it. Raises ValueError for arguments no SMSC would send.
    """
    if ref_bits not in (8, 16):
        raise ValueError(f"ref_bits must be 8 or 16, not {ref_bits}")
    if message_class not in (None, 0, 1, 2, 3):
        raise ValueError(f"message_class must be 0..3 or None, not {message_class}")
    locking = single = 0
    if language is not None:
        if shift not in _SHIFTS:
            raise ValueError(f"shift must be one of {_SHIFTS}, not {shift!r}")
        ident = gsm7.language_by_name(language).ident
        single = ident if shift in ("single", "both") else 0
        locking = ident if shift in ("locking", "both") else 0
    language_ies = b""
    if single:
        language_ies += bytes((0x24, 1, single))
    if locking:
        language_ies += bytes((0x25, 1, locking))

    units: list[bytes] | None = None
    if encoding in (None, "gsm7"):
        units = gsm7.encode_chars(text, locking, single)
        if units is None and encoding == "gsm7":
            raise ValueError("text has characters outside the chosen GSM 7-bit tables")
    elif encoding != "ucs2":
        raise ValueError(f"encoding must be 'gsm7', 'ucs2' or None, not {encoding!r}")
    head = _deliver_head(sender, smsc, timestamp)

    if units is not None:
        dcs = 0x00 if message_class is None else 0xF0 | message_class
        parts = _split(units, 160, language_ies, ref_bits, lambda ies: (len(ies) * 8 + 6) // 7)
        count = len(parts)
        ref = _reference(reference, ref_bits, text, sender, timestamp)
        pdus = []
        for seq, chunk in enumerate(parts, 1):
            header = language_ies + (_concat_ie(ref, count, seq, ref_bits) if count > 1 else b"")
            septets = b"".join(chunk)
            udh = bytes((len(header),)) + header if header else b""
            skip = (len(udh) * 8 + 6) // 7
            body = bytearray(gsm7.pack_septets(septets, skip))
            body[: len(udh)] = udh
            pdus.append(_deliver_pdu(head, bool(udh), dcs, skip + len(septets), bytes(body)))
        return pdus

    dcs = 0x08 if message_class is None else 0x18 | message_class
    ucs2_units = [char.encode("utf-16-be") for char in text]
    parts = _split(ucs2_units, 140, b"", ref_bits, len)
    count = len(parts)
    ref = _reference(reference, ref_bits, text, sender, timestamp)
    pdus = []
    for seq, chunk in enumerate(parts, 1):
        header = _concat_ie(ref, count, seq, ref_bits) if count > 1 else b""
        udh = bytes((len(header),)) + header if header else b""
        body = udh + b"".join(chunk)
        pdus.append(_deliver_pdu(head, bool(udh), dcs, len(body), body))
    return pdus


SUBMIT_VALIDITY = 0xAA
"""TP-VP of what we send, relative format: 0xAA is 4 days (23.040 9.2.3.12.1), what
phones and most modems put there by default."""


def encode_submit(text: str, recipient: str, *, encoding: str | None = None) -> tuple[str, int]:
    """The one SMS-SUBMIT that ``AT+CMGS`` in PDU mode sends: ``(pdu_hex, tpdu_length)``.

    The PDU starts with an empty SMSC field (``00``: the modem uses the SIM's SMSC), so
    ``tpdu_length``, the number ``AT+CMGS=`` takes, is the PDU's octets less that one.
    TP-MR is 0 (the modem numbers the message itself), TP-VP relative (:data:`SUBMIT_VALIDITY`),
    no status report. GSM 7-bit when every character is in the default alphabet or its
    extension table, else UCS2 (UTF-16BE); ``encoding`` ("gsm7" or "ucs2") forces one.
    ``recipient`` is international (``+44...``) or national digits. One part only: a text
    longer than 160 septets or 70 UCS2 units raises ValueError, as does any argument an
    SMSC would refuse.
    """
    units: list[bytes] | None = None
    if encoding in (None, "gsm7"):
        units = gsm7.encode_chars(text)
        if units is None and encoding == "gsm7":
            raise ValueError("text has characters outside the GSM 7-bit default alphabet")
    elif encoding != "ucs2":
        raise ValueError(f"encoding must be 'gsm7', 'ucs2' or None, not {encoding!r}")
    if not (recipient.startswith("+") and recipient[1:].isdigit()) and not recipient.isdigit():
        raise ValueError(f"recipient {recipient!r} is not a phone number")
    if units is not None:
        septets = b"".join(units)
        if len(septets) > 160:
            raise ValueError(f"text needs {len(septets)} septets; one SMS holds 160")
        dcs, udl, body = 0x00, len(septets), gsm7.pack_septets(septets)
    else:
        body = text.encode("utf-16-be", "surrogatepass")
        if len(body) > 140:
            raise ValueError(f"text needs {len(body)} octets in UCS2; one SMS holds 140")
        dcs, udl = 0x08, len(body)
    # First octet: TP-MTI 01 (SUBMIT), TP-VPF 10 (relative), TP-RD, SRR, UDHI and RP clear.
    tpdu = (
        bytes((0x11, 0x00))
        + _encode_address(recipient)
        + bytes((0x00, dcs, SUBMIT_VALIDITY, udl))
        + body
    )
    return "00" + tpdu.hex().upper(), len(tpdu)


def _split(
    units: list[bytes],
    capacity: int,
    fixed_ies: bytes,
    ref_bits: int,
    header_cost: Callable[[bytes], int],
) -> list[list[bytes]]:
    """Cut per-character units into parts that fit ``capacity`` (septets or octets).

    ``header_cost(udh)`` is what a header of those octets costs in the part's units. A
    character's units are never cut, so escape and surrogate pairs stay whole.
    """

    def room(ies: bytes) -> int:
        return capacity - (header_cost(bytes((len(ies),)) + ies) if ies else 0)

    total = sum(len(unit) for unit in units)
    if total <= room(fixed_ies):
        return [units]
    limit = room(fixed_ies + _concat_ie(0, 0, 0, ref_bits))
    parts: list[list[bytes]] = [[]]
    used = 0
    for unit in units:
        if used + len(unit) > limit:
            parts.append([])
            used = 0
        parts[-1].append(unit)
        used += len(unit)
    if len(parts) > 255:
        raise ValueError(f"text needs {len(parts)} parts; a concatenated SMS has at most 255")
    return parts


def _concat_ie(ref: int, total: int, seq: int, ref_bits: int) -> bytes:
    if ref_bits == 8:
        return bytes((0x00, 3, ref, total, seq))
    return bytes((0x08, 4, ref >> 8, ref & 0xFF, total, seq))


def _reference(
    reference: int | None, ref_bits: int, text: str, sender: str, timestamp: datetime
) -> int:
    limit = 1 << ref_bits
    if reference is None:
        key = f"{sender}\0{timestamp.isoformat()}\0{text}".encode("utf-8", "surrogatepass")
        return zlib.crc32(key) % limit
    if not 0 <= reference < limit:
        raise ValueError(f"reference {reference} does not fit {ref_bits} bits")
    return reference


def _deliver_head(sender: str, smsc: str | None, timestamp: datetime) -> tuple[bytes, ...]:
    """The fields every part shares: SMSC, originating address, timestamp."""
    return _encode_smsc(smsc), _encode_address(sender), _encode_scts(timestamp)


def _deliver_pdu(head: tuple[bytes, ...], udhi: bool, dcs: int, udl: int, body: bytes) -> bytes:
    smsc_field, address, scts = head
    # TP-MMS set: no more messages waiting, as for a lone delivery; PID 0: plain SMS.
    first = 0x04 | (0x40 if udhi else 0)
    return smsc_field + bytes((first,)) + address + bytes((0, dcs)) + scts + bytes((udl,)) + body


def _swap_digits(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return binascii.unhexlify("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


def _encode_smsc(smsc: str | None) -> bytes:
    if not smsc:
        return b"\x00"
    international = smsc.startswith("+")
    digits = smsc[1:] if international else smsc
    if not digits.isdigit() or len(digits) > 20:
        raise ValueError(f"SMSC address {smsc!r} is not a phone number")
    number = _swap_digits(digits)
    return bytes((len(number) + 1, 0x91 if international else 0x81)) + number


def _encode_address(address: str) -> bytes:
    if address.startswith("+") and address[1:].isdigit() and len(address) <= 21:
        digits = address[1:]
        return bytes((len(digits), 0x91)) + _swap_digits(digits)
    if address.isdigit() and len(address) <= 20:
        return bytes((len(address), 0xA1)) + _swap_digits(address)
    chars = gsm7.encode_chars(address)
    if not address or chars is None:
        raise ValueError(f"alphanumeric sender {address!r} is not GSM 7-bit text")
    septets = b"".join(chars)
    if len(septets) > 11:
        raise ValueError(f"alphanumeric sender {address!r} is longer than 11 septets")
    packed = gsm7.pack_septets(septets)
    return bytes(((len(septets) * 7 + 3) // 4, 0xD0)) + packed


def _encode_scts(timestamp: datetime) -> bytes:
    offset = timestamp.utcoffset()
    if offset is None:
        raise ValueError("timestamp must be timezone-aware: the SCTS carries its zone")
    minutes, remainder = divmod(int(offset.total_seconds()), 60)
    if remainder or minutes % 15:
        raise ValueError(f"time zone {offset} is not a whole number of quarter hours")
    quarters = abs(minutes) // 15
    if quarters > 79:
        raise ValueError(f"time zone {offset} is beyond what the SCTS can carry")
    if not 2000 <= timestamp.year <= 2099:
        raise ValueError(f"year {timestamp.year} does not fit the SCTS (2000-2099)")
    fields = (
        timestamp.year % 100,
        timestamp.month,
        timestamp.day,
        timestamp.hour,
        timestamp.minute,
        timestamp.second,
    )
    octets = bytes(((value % 10) << 4) | (value // 10) for value in fields)
    zone = ((quarters % 10) << 4) | (quarters // 10) | (0x08 if minutes < 0 else 0)
    return octets + bytes((zone,))
