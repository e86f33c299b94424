"""Bytes from a modem's AT port in, typed events out: the pure line framer.

:class:`AtFramer` is a small stateful feeder: ``feed(data)`` takes whatever the port
delivered (one byte or a kilobyte, cut anywhere) and returns the events completed by it:

- :class:`~agent.protocol.results.FinalResult` ends the pending command's response;
- :class:`InfoLine` is a line of that response;
- :class:`Prompt` is the ``> `` after ``AT+CMGS=<n>``, which has no line end;
- :class:`Echo` is the modem repeating the command line (echo is on until ``ATE0``);
- :class:`~agent.protocol.urc.Urc` subclasses are unsolicited result codes;
- :class:`Garbage` is what cannot be a line of AT text (binary, NMEA from a GPS port, a
  line longer than the limit, a known URC that does not parse), kept for the log.

The framer knows the pending command only because the session tells it, with
:meth:`AtFramer.expect` before writing the command. That is how it tells ``+CREG: 0,1``
(the answer to ``AT+CREG?``) from ``+CREG: 1`` (a URC): a line whose prefix can be
unsolicited is an answer only when the pending command reads, tests or executes that
same name (``AT+CREG?``, ``AT+CREG=?``, ``AT^HWVER``); after a set command
(``AT+CUSD=1,...``, ``AT+CPIN="1234"``) it is a URC. Timing plays no part.

Lines end at CR or LF (so ``\\r\\n``, ``\\n``, a lone ``\\r`` and ``\\r\\r\\n`` all work);
blank lines are skipped. Ctrl-Z and ESC also end a line, since they end the echo of an
SMS body. A line is at most ``max_line`` bytes: a longer one is reported once as Garbage
and dropped up to its end, so memory stays bounded whatever arrives.

A ``+CUSD:`` answer (and only that URC) may come in the GSM 7-bit default alphabet, one
byte per character: a module printing USSD text with ``AT+CSCS="GSM"`` (SIM800) writes
'£' as 0x01 and '@' as 0x00 (docs/modems.md, "USSD answers in the GSM character set").
When such a line is not UTF-8 text, the quoted string is read as GSM 7-bit bytes with
the extension table. Inside that string Ctrl-Z (GSM 'Ξ') and ESC (the escape to the
extension table) do not end the line; CR and LF still do, since in the GSM alphabet
0x0D and 0x0A *are* CR and LF: a menu's line break, joined back with ``\\n`` like any
multi-line +CUSD (an escaped 0x0A, the page break, ends up as a line break too).

ATV0 (numeric result codes) is supported when the session sets ``numeric_results``: a
lone digit line is then a result code. The agent runs ATV1; V0 is there for modems stuck
in it after a reset.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import AtParseError
from agent.protocol import gsm7
from agent.protocol.results import CALL_RESULTS, FinalResult, ResultKind, parse_final_result
from agent.protocol.urc import (
    TWO_LINE_URCS,
    CallEnded,
    Ring,
    UnknownUrc,
    Urc,
    parse_pdu_urc,
    parse_urc,
    urc_name,
)

CTRL_Z = b"\x1a"
"""Ends an SMS body typed after the ``> `` prompt: the modem sends it."""

ESC = b"\x1b"
"""Cancels an SMS body typed after the prompt: nothing is sent."""

MAX_LINE = 4096
# A +CUSD answer may span lines (menus); beyond this many it is not one, but a lost quote.
MAX_CONTINUATION_LINES = 32

# A run of CR and LF is one line end: "\r\n" (and the blank lines between a response's
# lines) ends one line, not a line and a blank one to decode and drop (issue 19).
_TERMINATOR = re.compile(rb"[\r\n]+|[\x1a\x1b]")
_NMEA = re.compile(r"\$[A-Z]{5},")
NMEA_SENTENCE = "NMEA sentence"  # the Garbage reason a probe counts to tell a GPS port
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # C0 controls but tab, and DEL
_HEX_LINE = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_SUBCOMMAND = re.compile(r"\s*([+^!#$%*][A-Za-z0-9_]+)\s*(=\?|\?|=)?")
_PROMPTING = frozenset({"+CMGS", "+CMGW", "+CMGC"})
_BOUNDARY_NOISE = b"\x00\xff \t"
_CUSD_PREFIX = b"+CUSD:"
_LINE_ENDS = b"\r\n"  # end a line even inside a GSM 7-bit +CUSD string (they are CR, LF)


@dataclass(frozen=True, slots=True)
class InfoLine:
    """A line of the pending command's response."""

    text: str


@dataclass(frozen=True, slots=True)
class Echo:
    """The modem's echo of the command line (or of an SMS body)."""

    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """The ``> `` prompt: the modem waits for the SMS body and Ctrl-Z."""


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that are not AT text, with why; kept for the raw log."""

    data: bytes
    reason: str


Event = FinalResult | InfoLine | Echo | Prompt | Garbage | Urc


def encode_command(command: str) -> bytes:
    """The bytes to write for ``command``: ``"AT+CMGR=3"`` -> ``b"AT+CMGR=3\\r"``.

    V.250 ends a command line with CR alone. A line end or non-ASCII character inside
    would split or corrupt the command, so it is refused (ValueError: a caller's bug).
    """
    line = command.encode("ascii", errors="replace")
    if not command.isascii() or _TERMINATOR.search(line):
        raise ValueError(f"not a single ASCII command line: {command!r}")
    return line + b"\r"


def encode_sms_body(pdu_hex: str) -> bytes:
    """The bytes to write after the prompt: the PDU in hex and Ctrl-Z."""
    if not _HEX_LINE.fullmatch(pdu_hex):
        raise ValueError(f"not a PDU in hex: {pdu_hex!r}")
    return pdu_hex.encode("ascii") + CTRL_Z


def _decode_gsm_cusd(raw: bytes, *, continuing: bool) -> str | None:
    """A +CUSD line (or a continuation line of one, which starts inside the string) whose
    quoted string is GSM 7-bit default alphabet bytes; None when it is not one: the parts
    outside the quotes must be printable ASCII, the string's bytes septets (below 0x80).
    Boundary noise is stripped outside the string only: inside, 0x00 is '@'.
    """
    if continuing:
        opening = 0
    else:
        raw = raw.lstrip(_BOUNDARY_NOISE)
        if not raw.startswith(_CUSD_PREFIX):
            return None
        opening = raw.find(b'"') + 1
        if opening == 0:
            return None
    closing = raw.find(b'"', opening)
    if closing < 0:
        closing = len(raw)
    before, string, after = raw[:opening], raw[opening:closing], raw[closing:]
    after = after.rstrip(_BOUNDARY_NOISE)
    for outside in (before, after):
        if not outside.isascii() or _CONTROL.search(outside.decode("ascii")):
            return None
    if not string.isascii():
        return None
    return before.decode("ascii") + gsm7.decode_septets(string) + after.decode("ascii")


@dataclass(frozen=True, slots=True)
class _Pending:
    """What the framer needs to know about the command in flight."""

    line: str
    solicits: frozenset[str]  # URC-capable prefixes this command answers with
    dialling: bool  # ATD/ATA/ATO: call results end it
    prompts: bool  # AT+CMGS=...: a "> " prompt comes before the final result


def _split_outside_quotes(text: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


@functools.lru_cache(maxsize=256)
def _pending(command: str) -> _Pending:
    # Cached: the same few lines (AT+CMGR=<i>, AT+CMGD=<i>, the health line) come again
    # and again, and parsing one takes a loop over its characters.
    text = command.strip()
    body = text[2:] if text[:2].upper() == "AT" else text
    solicits: set[str] = set()
    prompts = False
    for part in _split_outside_quotes(body):
        match = _SUBCOMMAND.match(part)
        if match is None:
            continue
        name, form = match.group(1).upper(), match.group(2)
        if form == "=":
            prompts = prompts or name in _PROMPTING
        else:
            solicits.add(name)
    dialling = body[:1].upper() in ("D", "A", "O")
    return _Pending(text, frozenset(solicits), dialling, prompts)


class AtFramer:
    """Turns the byte stream of one AT port into events; see the module docstring.

    Not thread-safe and needs not be: one owner task per port feeds it.
    """

    def __init__(self, *, max_line: int = MAX_LINE, numeric_results: bool = False) -> None:
        self.max_line = max_line
        self.numeric_results = numeric_results
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for a line end
        self._skipping = False  # dropping the rest of an over-long line
        self._pending: _Pending | None = None
        self._echo: str | None = None  # upper-cased, as echoes are compared
        self._prompt_expected = False
        self._pdu_header: str | None = None  # +CMT/+CDS/+CBM waiting for its PDU line
        self._continuation: list[str] = []  # a +CUSD whose quoted string spans lines

    @property
    def pending(self) -> str | None:
        """The command line whose response is being framed, if any."""
        return self._pending.line if self._pending else None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line (never more than ``max_line``)."""
        return len(self._buffer)

    def expect(self, command: str | None) -> None:
        """Say which command line is about to be written (None: none is pending any more,
        e.g. after a timeout). Call it before writing, so no byte of the answer is missed.
        """
        self._pending = _pending(command) if command else None
        self._echo = self._pending.line.upper() if self._pending else None
        self._prompt_expected = bool(self._pending and self._pending.prompts)

    def expect_body(self, body: str) -> None:
        """Say that ``body`` (an SMS PDU in hex) is about to be written after the prompt,
        so that its echo is recognised and dropped."""
        self._echo = body.strip().upper()

    def feed(self, data: bytes) -> list[Event]:
        """Take ``data`` from the port; return the events it completes, in order."""
        events: list[Event] = []
        self._buffer += data
        while True:
            if self._prompt_expected and self._buffer[:2] == b"> ":
                del self._buffer[:2]
                self._scanned = 0
                self._prompt_expected = False
                events.append(Prompt())
            match = _TERMINATOR.search(self._buffer, self._scanned)
            if match is None:
                self._scanned = len(self._buffer)
                if self._skipping:
                    self._buffer.clear()
                    self._scanned = 0
                elif len(self._buffer) > self.max_line:
                    self._too_long(bytes(self._buffer), events)
                    self._buffer.clear()
                    self._scanned = 0
                    self._skipping = True
                return events
            end = match.start()
            if self._buffer[end] not in _LINE_ENDS and self._inside_ussd_string(end):
                self._scanned = end + 1  # GSM 'Ξ' or the escape septet, not a line end
                continue
            self._scanned = 0
            if end == 0 and not self._skipping:
                del self._buffer[: match.end()]  # a blank line: nothing in it to decode
                continue
            line = bytes(self._buffer[:end])
            del self._buffer[: match.end()]
            if self._skipping:
                self._skipping = False
            elif len(line) > self.max_line:
                self._too_long(line, events)
            else:
                self._line(line, events)

    def _inside_ussd_string(self, end: int) -> bool:
        """Whether byte ``end`` of the buffer lies inside the quoted string of a +CUSD."""
        quotes = self._buffer.count(b'"', 0, end)
        if self._continuation:
            return quotes % 2 == 0  # the line began inside the string
        start = self._buffer[:end].lstrip(_BOUNDARY_NOISE)
        return start.startswith(_CUSD_PREFIX) and quotes % 2 == 1

    def _too_long(self, data: bytes, events: list[Event]) -> None:
        self._abandon_multiline(events, "over-long line")
        events.append(Garbage(data[: self.max_line], f"line longer than {self.max_line} bytes"))

    def _decode(self, raw: bytes, events: list[Event]) -> str | None:
        """The text of a line, "" for a blank one, None (and a Garbage event) for binary."""
        stripped = raw.strip(_BOUNDARY_NOISE)
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or _CONTROL.search(text):
            continuing = bool(self._continuation)
            if continuing or stripped.startswith(_CUSD_PREFIX):
                gsm_text = _decode_gsm_cusd(raw, continuing=continuing)
                if gsm_text is not None:
                    return gsm_text.strip()
            reason = "not UTF-8 text" if text is None else "control characters in line"
            events.append(Garbage(raw, reason))
            return None
        if _NMEA.match(text):
            events.append(Garbage(raw, NMEA_SENTENCE))
            return None
        return text.strip()

    def _line(self, raw: bytes, events: list[Event]) -> None:
        if not raw.strip(_BOUNDARY_NOISE):
            return  # spaces or NULs only (CR and LF runs end before this, in feed)
        text = self._decode(raw, events)
        if text is None:
            self._abandon_multiline(events, "binary line")
            return
        if not text:
            return
        if self._pdu_header is not None:
            header, self._pdu_header = self._pdu_header, None
            if _HEX_LINE.fullmatch(text):
                self._emit_urc(lambda: parse_pdu_urc(header, text), header + "\n" + text, events)
                return
            events.append(Garbage(header.encode(), f"no PDU line after {header!r}"))
        if self._continuation and self._continue(text, events):
            return
        echo = self._echo
        if echo is not None and len(text) == len(echo) and text.upper() == echo:
            self._echo = None
            events.append(Echo(text))
            return
        if self._final_or_call_result(text, events):
            return
        name = urc_name(text)
        if name is not None and not (self._pending and name in self._pending.solicits):
            if name in TWO_LINE_URCS:
                self._pdu_header = text
            elif name == "+CUSD" and text.count('"') % 2:
                self._continuation = [text]
            else:
                self._emit_urc(lambda: parse_urc(text), text, events)
            return
        if self._pending is not None:
            events.append(InfoLine(text))
        else:
            events.append(UnknownUrc(line=text))

    def _final_or_call_result(self, text: str, events: list[Event]) -> bool:
        if self.numeric_results and text == "2":
            events.append(Ring(line=text))
            return True
        result = parse_final_result(text, numeric=self.numeric_results)
        if result is None:
            return False
        if result.kind in CALL_RESULTS and not (self._pending and self._pending.dialling):
            if result.kind is ResultKind.NO_CARRIER:
                events.append(CallEnded(line=text))
            else:
                events.append(UnknownUrc(line=text))
            return True
        events.append(result)
        self.expect(None)
        return True

    def _continue(self, text: str, events: list[Event]) -> bool:
        """Add ``text`` to a multi-line +CUSD; False when it cannot belong to it."""
        joined_length = sum(len(part) + 1 for part in self._continuation) + len(text)
        if (
            parse_final_result(text) is not None
            or len(self._continuation) >= MAX_CONTINUATION_LINES
            or joined_length > self.max_line
        ):
            self._abandon_multiline(events, "unterminated +CUSD string")
            return False
        self._continuation.append(text)
        if text.count('"') % 2:
            joined = "\n".join(self._continuation)
            self._continuation = []
            self._emit_urc(lambda: parse_urc(joined), joined, events)
        return True

    def _abandon_multiline(self, events: list[Event], why: str) -> None:
        if self._pdu_header is not None:
            events.append(Garbage(self._pdu_header.encode(), f"{why} instead of a PDU"))
            self._pdu_header = None
        if self._continuation:
            events.append(Garbage("\n".join(self._continuation).encode(), why))
            self._continuation = []

    @staticmethod
    def _emit_urc(build: Callable[[], Urc], text: str, events: list[Event]) -> None:
        try:
            events.append(build())
        except AtParseError as exc:
            events.append(Garbage(text.encode(), str(exc)))
