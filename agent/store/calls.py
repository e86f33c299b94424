"""Incoming calls in the store (agent.modem.calls records them; docs/sims.md).

A call is one row per call, not per ring. With ``[calls] forward`` on, the caller ID also
becomes an ordinary message from the caller (flash-call verification puts the code in
the calling number's last digits), written in the same transaction as the call, so it
goes through the outbox with the durability every SMS has.
"""

from __future__ import annotations

from datetime import datetime

from agent.protocol import gsm7
from agent.store.blocking import BlockRules
from agent.store.ingest import add_message, touch_sim
from agent.store.models import IncomingCall

WITHHELD = "withheld"
"""What ``{caller}`` reads in a forwarded call's text when the network withheld it."""


def forward_text(template: str, caller: str | None, at: datetime) -> str:
    """``[calls] forward_text`` filled in: ``{caller}`` and ``{time}`` (ISO 8601, UTC)."""
    return template.format(caller=caller or WITHHELD, time=at.isoformat(timespec="seconds"))


def record(
    *,
    iccid: str,
    slot: str | None,
    caller: str | None,
    at: datetime,
    rejected_with: str | None,
    forward_template: str | None,
    rules: BlockRules,
) -> tuple[int, int | None]:
    """Keep one call; with ``forward_template``, also the message that forwards it. The
    call's id and the message's (None when not forwarded: withheld callers are not, as
    OnlineSim takes a message only from a number)."""
    touch_sim(iccid, slot=slot, imei=None, seen_at=at)
    message_id = None
    if forward_template is not None and caller:
        text = forward_text(forward_template, caller, at)
        message_id, _ = add_message(
            iccid=iccid,
            slot=slot,
            sender=caller,
            sender_type="international" if caller.startswith("+") else "unknown",
            text=text,
            encoding="gsm7" if gsm7.encode_chars(text) is not None else "ucs2",
            scts=at,
            received_at=at,
            rules=rules,
        )
    call_id = IncomingCall.insert(
        iccid=iccid,
        slot=slot,
        caller=caller,
        at=at,
        rejected_with=rejected_with,
        message_id=message_id,
    ).execute()
    return call_id, message_id
