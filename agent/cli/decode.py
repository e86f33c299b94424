"""``simedge decode HEX [HEX ...]`` / ``simedge decode -``: SMS PDUs to JSON lines.

One JSON object per PDU, in input order; a PDU that does not decode prints
``{"error": ...}`` on its line and the exit code becomes 1, the others still print.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "decode SMS PDUs (hex, as AT+CMGR prints them) into JSON lines"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pdus",
        nargs="+",
        metavar="HEX",
        help="PDUs in hex; '-' reads one PDU per line from stdin (blank lines skipped)",
    )
    parser.add_argument(
        "--no-smsc",
        action="store_true",
        help="the PDUs start with the first octet (no SMSC address in front)",
    )


def run(args: argparse.Namespace) -> int:
    from agent.errors import PduError
    from agent.protocol.pdu import decode

    failed = False
    for pdu in _inputs(args.pdus):
        try:
            record = as_record(decode(pdu, has_smsc=not args.no_smsc))
        except PduError as exc:
            record = {"error": str(exc), "pdu": pdu}
            failed = True
        print(json.dumps(record, ensure_ascii=False), flush=True)
    return 1 if failed else 0


def _inputs(arguments: list[str]) -> Any:
    for argument in arguments:
        if argument == "-":
            for line in sys.stdin:
                if line.strip():
                    yield line.strip()
        else:
            yield argument


def as_record(sms: Any) -> dict[str, Any]:
    """The JSON-ready fields of a decoded PDU (SmsDeliver, SmsSubmit or SmsStatusReport)."""
    record: dict[str, Any] = {"type": sms.type, "smsc": sms.smsc}
    if sms.type == "status_report":
        record.update(
            recipient=sms.recipient,
            recipient_type=sms.recipient_type,
            reference=sms.message_reference,
            status=sms.status,
            delivered=sms.delivered,
            timestamp=sms.timestamp.isoformat(),
            epoch=int(sms.timestamp.timestamp()),
            discharge_time=sms.discharge_time.isoformat(),
        )
        return record
    if sms.type == "deliver":
        record.update(
            sender=sms.sender,
            sender_type=sms.sender_type,
            timestamp=sms.timestamp.isoformat(),
            epoch=int(sms.timestamp.timestamp()),
        )
    else:
        record.update(
            recipient=sms.recipient,
            recipient_type=sms.recipient_type,
            reference=sms.message_reference,
        )
    record.update(
        text=sms.text,
        encoding=sms.encoding,
        concat=(
            {"ref": sms.concat.ref, "total": sms.concat.total, "seq": sms.concat.seq}
            if sms.concat
            else None
        ),
        **{"class": sms.message_class},
        pid=sms.pid,
    )
    if sms.encoding == "8bit" or sms.compressed:
        record["data"] = sms.data.hex().upper()
    if sms.compressed:
        record["compressed"] = True
    if sms.text_damaged:
        record["text_damaged"] = True
    return record
