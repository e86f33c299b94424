"""Final result codes of AT commands and the named error codes of 27.007 and 27.005.

A command's response ends with one final result code (ITU-T V.250 5.7, 3GPP TS 27.007
9.2, TS 27.005 3.2.5). Verbose form (ATV1) is a word (``OK``, ``NO CARRIER``) or an
extended error with a number or, on some firmware, the standard's text
(``+CME ERROR: 10`` / ``+CME ERROR: SIM not inserted``). Numeric form (ATV0) is a digit.

Codes are kept as numbers and named after the standard's text (``SIM_NOT_INSERTED``)
so that logs and the dashboard say what happened while the session can still branch on
the number. Text answers are mapped back to the standard's number when the text is the
standard's own (case-insensitive, spaces normalised); other text keeps ``code=None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from agent.errors import CommandFailed


class ResultKind(StrEnum):
    """The kinds of final result code; the value is the verbose word (or CME/CMS)."""

    OK = "OK"
    CONNECT = "CONNECT"
    NO_CARRIER = "NO CARRIER"
    ERROR = "ERROR"
    NO_DIALTONE = "NO DIALTONE"
    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    CME = "CME"
    CMS = "CMS"


# V.250 table 1: numeric (ATV0) codes. 2 is RING, which is unsolicited and a URC here.
NUMERIC_RESULTS: dict[int, ResultKind] = {
    0: ResultKind.OK,
    1: ResultKind.CONNECT,
    3: ResultKind.NO_CARRIER,
    4: ResultKind.ERROR,
    6: ResultKind.NO_DIALTONE,
    7: ResultKind.BUSY,
    8: ResultKind.NO_ANSWER,
}

# Results that only end a dialling command (ATD/ATA/ATO); elsewhere NO CARRIER is a call
# ending by itself, and the others do not occur.
CALL_RESULTS = frozenset(
    {ResultKind.NO_CARRIER, ResultKind.BUSY, ResultKind.NO_ANSWER, ResultKind.NO_DIALTONE}
)


@dataclass(frozen=True, slots=True)
class FinalResult:
    """The line that ends a command's response.

    ``code`` is the number of a CME/CMS error (None when the modem gave text that is not
    the standard's); ``text`` is the line as received, kept for logs and errors.
    """

    kind: ResultKind
    code: int | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        """True for the results after which the command's answer can be used."""
        return self.kind in (ResultKind.OK, ResultKind.CONNECT)

    @property
    def name(self) -> str:
        """The standard's name of the error code (``MEMORY_FULL``), or the kind's word."""
        if self.kind is ResultKind.CME:
            return cme_name(self.code) if self.code is not None else _detail(self.text)
        if self.kind is ResultKind.CMS:
            return cms_name(self.code) if self.code is not None else _detail(self.text)
        return self.kind.name


_VERBOSE_WORDS = {kind.value: kind for kind in ResultKind if kind.value not in ("CME", "CMS")}
_EXTENDED = re.compile(r"^\+(CME|CMS) ERROR:\s*(.*?)\s*$", re.IGNORECASE)


def _detail(text: str) -> str:
    match = _EXTENDED.match(text)
    return match.group(2) if match else text


def parse_final_result(line: str, *, numeric: bool = False) -> FinalResult | None:
    """The final result code ``line`` is, or None if it is not one.

    ``numeric`` says ATV0 is in force, so that a lone digit is a result code; it is off by
    default because a lone digit is otherwise an ordinary answer. ``CONNECT`` may carry
    text (``CONNECT 115200``). Extended errors accept a number or the standard's text.
    """
    text = line.strip()
    upper = text.upper()
    if upper in _VERBOSE_WORDS:
        return FinalResult(_VERBOSE_WORDS[upper], None, text)
    if upper.startswith("CONNECT "):
        return FinalResult(ResultKind.CONNECT, None, text)
    if numeric and len(text) == 1 and text in "0123456789" and int(text) in NUMERIC_RESULTS:
        return FinalResult(NUMERIC_RESULTS[int(text)], None, text)
    match = _EXTENDED.match(text)
    if match is None:
        return None
    kind = ResultKind.CME if match.group(1).upper() == "CME" else ResultKind.CMS
    detail = match.group(2)
    if detail.isascii() and detail.isdigit():
        return FinalResult(kind, int(detail), text)
    table = _CME_BY_TEXT if kind is ResultKind.CME else _CMS_BY_TEXT
    return FinalResult(kind, table.get(_normalise(detail)), text)


def to_command_failed(result: FinalResult, *, command: str = "", port: str = "") -> CommandFailed:
    """The CommandFailed error for a failed ``result`` of ``command`` on ``port``.

    The one place where a final result becomes an exception, so that every failure
    carries the same fields: kind ("ERROR", "CME", "CMS", or the call result's word),
    code, the standard's name, and the raw line.
    """
    what = f"{command}: " if command else ""
    code = f" {result.code}" if result.code is not None else ""
    kind = result.kind.value
    message = f"{what}{kind}{code} {result.name}" if code or kind in ("CME", "CMS") else what + kind
    return CommandFailed(message, port, result.text, kind=kind, code=result.code, name=result.name)


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace('"', "").split())


def _name_of(text: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")


# 27.007 9.2.1 (general) and 9.2.2 (GPRS / EPS) +CME ERROR codes, with the standard's text.
CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    1: "no connection to phone",
    2: "phone-adaptor link reserved",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    6: "PH-FSIM PIN required",
    7: "PH-FSIM PUK required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    40: "network personalization PIN required",
    41: "network personalization PUK required",
    42: "network subset personalization PIN required",
    43: "network subset personalization PUK required",
    44: "service provider personalization PIN required",
    45: "service provider personalization PUK required",
    46: "corporate personalization PIN required",
    47: "corporate personalization PUK required",
    48: "hidden key required",
    49: "EAP method not supported",
    50: "incorrect parameters",
    51: "command implemented but currently disabled",
    52: "command aborted by user",
    53: "not attached to network due to MT functionality restrictions",
    54: "modem not allowed - MT restricted to emergency calls only",
    55: "operation not allowed because of MT functionality restrictions",
    56: "fixed dial number only allowed",
    57: "temporarily out of service due to other MT usage",
    58: "language/alphabet not supported",
    59: "unexpected data value",
    60: "system failure",
    61: "data missing",
    62: "call barred",
    63: "message waiting indication subscription failure",
    100: "unknown",
    103: "illegal MS",
    106: "illegal ME",
    107: "GPRS services not allowed",
    108: "GPRS services and non-GPRS services not allowed",
    111: "PLMN not allowed",
    112: "location area not allowed",
    113: "roaming not allowed in this location area",
    114: "GPRS services not allowed in this PLMN",
    115: "no suitable cells in location area",
    122: "congestion",
    126: "insufficient resources",
    127: "missing or unknown APN",
    128: "unknown PDP address or PDP type",
    129: "user authentication failed",
    130: "activation rejected by GGSN, Serving GW or PDN GW",
    131: "activation rejected, unspecified",
    132: "service option not supported",
    133: "requested service option not subscribed",
    134: "service option temporarily out of order",
    148: "unspecified GPRS error",
    149: "PDP authentication failure",
    150: "invalid mobile class",
    257: "network rejected request",
    258: "retry operation",
    259: "invalid deflected to number",
    260: "deflected to own number",
    261: "unknown subscriber",
    262: "service not available",
    263: "unknown class specified",
    264: "unknown network message",
}

# Short names where the standard's text makes an awkward identifier.
_CME_NAMES: dict[int, str] = {
    32: "NETWORK_NOT_ALLOWED_EMERGENCY_ONLY",
    54: "MODEM_NOT_ALLOWED_EMERGENCY_ONLY",
    58: "LANGUAGE_ALPHABET_NOT_SUPPORTED",
    130: "ACTIVATION_REJECTED_BY_GATEWAY",
}

# 27.005 3.2.5 +CMS ERROR codes. 0..127 are network (RP) causes of 24.011 E.2, 128..255
# TP-Failure-Causes of 23.040 9.2.3.22; the standard leaves unlisted numbers in those
# ranges reserved, so they are named by their group.
CMS_ERRORS: dict[int, str] = {
    1: "unassigned number",
    8: "operator determined barring",
    10: "call barred",
    21: "short message transfer rejected",
    22: "memory capacity exceeded",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable, unspecified",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    81: "invalid short message transfer reference value",
    95: "invalid message, unspecified",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    99: "information element non-existent or not implemented",
    111: "protocol error, unspecified",
    127: "interworking, unspecified",
    0x80: "telematic interworking not supported",
    0x81: "short message type 0 not supported",
    0x82: "cannot replace short message",
    0x8F: "unspecified TP-PID error",
    0x90: "data coding scheme (alphabet) not supported",
    0x91: "message class not supported",
    0x9F: "unspecified TP-DCS error",
    0xA0: "command cannot be actioned",
    0xA1: "command unsupported",
    0xAF: "unspecified TP-Command error",
    0xB0: "TPDU not supported",
    0xC0: "SC busy",
    0xC1: "no SC subscription",
    0xC2: "SC system failure",
    0xC3: "invalid SME address",
    0xC4: "destination SME barred",
    0xC5: "SM rejected-duplicate SM",
    0xC6: "TP-VPF not supported",
    0xC7: "TP-VP not supported",
    0xD0: "(U)SIM SMS storage full",
    0xD1: "no SMS storage capability in (U)SIM",
    0xD2: "error in MS",
    0xD3: "memory capacity exceeded",
    0xD4: "(U)SIM application toolkit busy",
    0xD5: "(U)SIM data download error",
    0xFF: "unspecified error cause",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}

_CMS_NAMES: dict[int, str] = {
    0x90: "DATA_CODING_SCHEME_NOT_SUPPORTED",
    0xD0: "USIM_SMS_STORAGE_FULL",
    0xD1: "NO_SMS_STORAGE_CAPABILITY_IN_USIM",
    0xD3: "MS_MEMORY_CAPACITY_EXCEEDED",
    0xD4: "USIM_APPLICATION_TOOLKIT_BUSY",
    0xD5: "USIM_DATA_DOWNLOAD_ERROR",
    340: "NO_CNMA_ACKNOWLEDGEMENT_EXPECTED",
}


def cme_name(code: int) -> str:
    """The name of a +CME ERROR code, e.g. 10 -> ``SIM_NOT_INSERTED``."""
    if code in CME_ERRORS:
        return _CME_NAMES.get(code) or _name_of(CME_ERRORS[code])
    return f"CME_{code}" if code < 256 else f"VENDOR_CME_{code}"


def cms_name(code: int) -> str:
    """The name of a +CMS ERROR code, e.g. 322 -> ``MEMORY_FULL``; reserved codes by group."""
    if code in CMS_ERRORS:
        return _CMS_NAMES.get(code) or _name_of(CMS_ERRORS[code])
    if code < 128:
        return f"NETWORK_CAUSE_{code}"
    if code < 256:
        return f"TP_FAILURE_CAUSE_{code}"
    if code >= 512:
        return f"VENDOR_CMS_{code}"
    return f"CMS_{code}"


_CME_BY_TEXT = {_normalise(text): code for code, text in CME_ERRORS.items()}
# Later codes win where texts repeat: the 3xx texts are the ones firmware prints.
_CMS_BY_TEXT = {_normalise(text): code for code, text in sorted(CMS_ERRORS.items())}
