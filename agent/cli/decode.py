"""``simedge decode HEX [HEX ...]`` / ``simedge decode -``: SMS PDUs to JSON lines.

One JSON object per PDU, in input order, each carrying its input as ``pdu`` so a line of
output can be matched to its input whatever was skipped. A PDU that does not decode prints
``{"pdu": ..., "error": ...}`` on its line and the others still print.

Input is PDUs in hex, or a modem transcript pasted as it is: a ``+CMGL:`` / ``+CMGR:`` /
``+CMT:`` / ``+CDS:`` line announces the PDU on the next line and its last field is the
``<length>`` (TPDU octets) that trims a SIM record's padding; other lines of the
transcript (``OK``, the echoed command) are skipped. A line may start with ``--no-smsc``
and/or ``--length=N`` to say so for that PDU alone.

Decoding salvages (see agent.protocol.pdu): a readable PDU with a faulty field decodes,
and its ``problems`` list says what was wrong; ``--strict`` refuses those instead.

Exit codes: 0 every PDU decoded, 1 some were refused, 2 usage, 3 internal error.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import sys
import traceback
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from agent.cli import EXIT_FAILURE, EXIT_OK

HELP = "decode SMS PDUs (hex, or a pasted +CMGL/+CMGR/+CMT transcript) into JSON lines"

EXIT_INTERNAL = 3

# +CMGL: <index>,<stat>,[<alpha>],<length> / +CMGR: <stat>,[<alpha>],<length> /
# +CMT: [<alpha>],<length> / +CDS: <length> (27.005 3.4.2, 3.4.3, 3.4.1): the length is last.
# The alpha field is bounded so a hostile line cannot make the match slow.
_ANNOUNCE = re.compile(r"^\+(CMGL|CMGR|CMT|CDS):[^\r\n]{0,200}?(\d{1,3})\s*$")
_LINE_OPTION = re.compile(r"^(--no-smsc|--length=(\d{1,3}))(?:\s+|$)")
# The longest a PDU line can honestly be: 12 octets of SMSC and a 176-octet TPDU, doubled,
# with room for padding a modem prints after it. Longer input is refused, not buffered.
MAX_LINE = 1024


@dataclasses.dataclass(frozen=True)
class Item:
    """One PDU to decode, as the input gave it."""

    pdu: str
    has_smsc: bool
    length: int | None = None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pdus",
        nargs="+",
        metavar="HEX",
        help="PDUs in hex; '-' reads lines from stdin: PDUs, or a modem transcript with "
        "+CMGL:/+CMGR:/+CMT:/+CDS: lines (blank and other lines skipped)",
    )
    parser.add_argument(
        "--no-smsc",
        action="store_true",
        help="the PDUs start with the first octet (no SMSC address in front); a line of "
        "input may say '--no-smsc' for itself alone",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse a PDU with any faulty field instead of decoding what is readable",
    )


def run(args: argparse.Namespace) -> int:
    try:
        return _decode_all(args)
    except (BrokenPipeError, KeyboardInterrupt):
        raise
    except Exception:
        traceback.print_exc()
        return EXIT_INTERNAL


def _decode_all(args: argparse.Namespace) -> int:
    from agent.errors import PduError
    from agent.protocol.pdu import decode

    failed = False
    for item in items(_lines(args.pdus), no_smsc=args.no_smsc):
        record: dict[str, Any] = {"pdu": item.pdu[:MAX_LINE]}
        try:
            if len(item.pdu) > MAX_LINE:
                raise PduError(
                    f"{len(item.pdu)} characters are more than any PDU has ({MAX_LINE})",
                    item.pdu[:MAX_LINE],
                    offset=MAX_LINE // 2,
                    field="hex",
                )
            sms = decode(
                item.pdu, has_smsc=item.has_smsc, length=item.length, salvage=not args.strict
            )
        except PduError as exc:
            record.update(error=str(exc), field=exc.field, offset=exc.offset)
            failed = True
        else:
            record.update(as_record(sms))
        if item.length is not None:
            record["length"] = item.length
        if not item.has_smsc:
            record["no_smsc"] = True
        print(json.dumps(record, ensure_ascii=False), flush=True)
    return EXIT_FAILURE if failed else EXIT_OK


def _lines(arguments: list[str]) -> Iterator[tuple[str, bool]]:
    """(line, whether it is surely a PDU): an argument is; a line of stdin may be any line
    of a transcript."""
    for argument in arguments:
        if argument == "-":
            # A pasted transcript may hold any byte: a bad one is a refused line, not a crash.
            if isinstance(sys.stdin, io.TextIOWrapper):
                sys.stdin.reconfigure(errors="replace")
            for line in sys.stdin:
                yield line, False
        else:
            yield argument, True


def items(lines: Iterable[tuple[str, bool]], *, no_smsc: bool = False) -> Iterator[Item]:
    """The PDUs of the input lines, with the length a transcript gave each."""
    announced: int | None = None
    for raw, surely_a_pdu in lines:
        line = raw.strip()
        if not line:
            continue
        if match := _ANNOUNCE.match(line):
            announced = int(match.group(2))
            continue
        has_smsc, length = not no_smsc, announced
        announced = None
        while option := _LINE_OPTION.match(line):
            if option.group(2) is None:
                has_smsc = False
            else:
                length = int(option.group(2))
            line = line[option.end() :]
        if surely_a_pdu or _is_hex(line):
            yield Item(line, has_smsc, length)
        elif length is not None or not has_smsc:
            yield Item(line, has_smsc, length)  # announced as a PDU: refused, not skipped
        elif _looks_like_a_pdu(line):
            yield Item(line, has_smsc)
        # else: an echoed command, OK, a URC: a transcript's other lines


def _is_hex(text: str) -> bool:
    return bool(text) and all(char in "0123456789abcdefABCDEF" for char in text)


def _looks_like_a_pdu(text: str) -> bool:
    """Mostly hex digits: a PDU with a typo is refused with its position, not skipped."""
    return sum(char in "0123456789abcdefABCDEF" for char in text) * 4 >= len(text) * 3


# Field names the JSON has always used, where the dataclass says it longer.
_RENAMED = {"message_class": "class", "message_reference": "reference"}


def as_record(sms: Any) -> dict[str, Any]:
    """Every field the decoder knows about a PDU (SmsDeliver, SmsSubmit, SmsStatusReport),
    JSON-ready: times in ISO 8601 (and ``epoch``), octets in hex, the header's elements."""
    record: dict[str, Any] = {}
    for field in dataclasses.fields(sms):
        record[_RENAMED.get(field.name, field.name)] = _jsonable(getattr(sms, field.name))
    if sms.timestamp is not None:
        record["epoch"] = int(sms.timestamp.timestamp())
    if sms.dcs is not None:
        record["dcs_hex"] = f"{sms.dcs:02X}"
    if sms.type == "status_report":
        record["delivered"] = sms.delivered
    return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            field.name: _jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
        if "iei" in fields:
            fields["iei_hex"] = f"{value.iei:02X}"
        if "message" in fields and "offset" in fields:
            fields["text"] = str(value)
        return fields
    return value
