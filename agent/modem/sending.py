"""Sending one SMS from a modem: the one ``AT+CMGS`` exchange that every sender uses
(the own-number probe, the SMS keep-alive), and how its failure reads to a person."""

from __future__ import annotations

from agent.errors import CommandFailed, CommandTimeout
from agent.modem.session import AtSession
from agent.protocol import commands
from agent.protocol.pdu import encode_submit
from agent.protocol.results import CMS_ERRORS

SEND_TIMEOUT = 60.0
"""Seconds AT+CMGS may take: the module waits for the network's answer (module manuals
give up to 60 s)."""


async def send_sms(session: AtSession, recipient: str, text: str) -> int:
    """Send one SMS in PDU mode; its message reference (TP-MR). Raises CommandFailed
    (``+CMS ERROR``), CommandTimeout or PortGone."""
    pdu_hex, length = encode_submit(text, recipient)
    return commands.parse_cmgs(
        await session.submit(f"AT+CMGS={length}", pdu_hex, timeout=SEND_TIMEOUT)
    )


def failure_reason(exc: Exception) -> str:
    """Why a send failed, as a person reads it: the +CMS ERROR code and its meaning."""
    if isinstance(exc, CommandFailed) and exc.kind == "CMS" and exc.code is not None:
        meaning = CMS_ERRORS.get(exc.code, exc.name or "unknown")
        return f"+CMS ERROR: {exc.code} {meaning}"
    if isinstance(exc, CommandFailed):
        return f"the SIM cannot send: {exc}"
    if isinstance(exc, CommandTimeout):
        return f"no answer to AT+CMGS in {SEND_TIMEOUT:g} s"
    return f"the modem went away while sending: {exc}"
