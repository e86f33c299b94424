"""The control protocol: JSON lines over the agent's unix socket.

The dashboard (``simedge tui``) and the CLI (``simedge sim set-number``, ``simedge outbox
retry``...) talk to the running agent through it. One JSON object per line, UTF-8, each
way; a request line is at most ``MAX_LINE`` bytes.

Requests carry an ``id`` (any JSON value, echoed back) and an ``op``; ``id`` and ``op``
are the envelope, so no operation has an argument of either name::

    {"id": 1, "op": "snapshot"}
    {"id": 2, "op": "reset_modem", "slot": "1-1.2"}

Answers::

    {"id": 1, "ok": true, "result": {...}}
    {"id": 2, "ok": false, "error": "no modem in slot 1-1.2"}

``{"op": "subscribe"}`` answers ``ok`` once the subscriber is registered (a snapshot taken
after that misses nothing), then the connection carries events until it closes:
``{"event": KIND, "data": {...}}`` with KIND one of ``EVENT_KINDS``. The agent never
waits for a slow reader: each subscriber has a bounded queue; when it overflows the
subscriber gets ``{"event": "overflow"}`` and should take a fresh ``snapshot``.

Operations (``OPS``) and their arguments:

    snapshot                         the whole site: modems, uplink, outbox, take-off, log
    subscribe                        live events (see above)
    messages  [limit, query, before] recent messages, newest first; query filters by
                                     number or sender
    message   message_id             one message with its raw PDU parts and attempts
    outbox    [state]                pending, backing-off and dead messages
    rescan                           run discovery now
    reset_modem  slot                climb the recovery ladder from a +CFUN reset
    set_number   iccid, number       a person's word for a SIM's own number
    trace        slot, on            raw AT trace of a slot's port, on or off
    add_block_rule name, [sender], [text]   keep matching SMS, never upload them
    retry        message_id | all_dead=true   send dead letters again
    takeoff_done iccid               the SIM was swapped by hand: clear the mark

Every string inside ``result`` and ``data`` that came from outside (SMS text, senders,
modem answers) is untrusted: a client must display it as plain text.
"""

from __future__ import annotations

import json
from typing import Any

from agent.errors import ControlError

MAX_LINE = 1 << 20  # one request or event line; a snapshot of 128 modems is ~100 KiB
SUBSCRIBER_QUEUE = 1000  # events buffered per subscriber before "overflow"

EVENT_KINDS = (
    "modem",
    "message",
    "uplink",
    "outbox",
    "log",
    "takeoff",
    "public_url",
    "overflow",
)

OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # op: (required arguments, optional arguments)
    "snapshot": ((), ()),
    "subscribe": ((), ()),
    "messages": ((), ("limit", "query", "before")),
    "message": (("message_id",), ()),
    "outbox": ((), ("state",)),
    "rescan": ((), ()),
    "reset_modem": (("slot",), ()),
    "set_number": (("iccid", "number"), ()),
    "trace": (("slot", "on"), ()),
    "add_block_rule": (("name",), ("sender", "text")),
    "retry": ((), ("message_id", "all_dead")),
    "takeoff_done": (("iccid",), ()),
}


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line. ``ensure_ascii`` keeps every byte printable on the wire."""
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def parse_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """(id, op, arguments) of one request line, or ControlError saying what is wrong."""
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"request is not a JSON line: {exc}") from exc
    if not isinstance(request, dict):
        raise ControlError("request must be a JSON object")
    op = request.get("op")
    if op not in OPS:
        raise ControlError(f"unknown op {op!r}; known: {', '.join(OPS)}")
    required, optional = OPS[op]
    arguments = {k: v for k, v in request.items() if k not in ("id", "op")}
    missing = [name for name in required if name not in arguments]
    if missing:
        raise ControlError(f"{op}: missing {', '.join(missing)}")
    unknown = [name for name in arguments if name not in required + optional]
    if unknown:
        raise ControlError(f"{op}: unknown argument {', '.join(unknown)}")
    return request.get("id"), op, arguments
