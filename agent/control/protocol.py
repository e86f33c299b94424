"""The control protocol: JSON lines over the agent's unix socket.

The dashboard (``simedge tui``) and the CLI (``simedge sim set-number``, ``simedge outbox
retry``...) talk to the running agent through it. One JSON object per line, UTF-8, each
way. A request line is at most ``MAX_REQUEST`` bytes and nested at most ``MAX_DEPTH``
deep (requests are flat; the bound is checked before the JSON parser recurses); an answer
or event line is at most ``MAX_LINE`` bytes.

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
    health                           what /healthz says: agent ok, uplink state, store writable
    subscribe                        live events (see above)
    messages  [limit, query, before] recent messages, newest first; query filters by
                                     number or sender
    message   message_id             one message with its raw PDU parts and attempts
    outbox    [state]                pending, backing-off and dead messages
    rescan                           run discovery now
    reset_modem  slot                climb the recovery ladder from a +CFUN reset
    set_number   iccid, number       a person's word for a SIM's own number
    trace        slot, on            raw AT trace of a slot's port, on or off
    block_rules                      the block rules in force, with where each lives
    preview_block_rule [name], [sender], [text]   check a rule and say how many of the
                                     last stored SMS it would have withheld
    add_block_rule name, [sender], [text], [force]   keep matching SMS, never upload them;
                                     refused when it would withhold most recent SMS,
                                     unless force=true (a person confirmed)
    remove_block_rule name           a rule added at run time (configured ones: the file)
    retry        message_id | all_dead=true   send dead letters again
    takeoff_done iccid               the SIM was swapped by hand: clear the mark
    sims                             every SIM ever seen, by ICCID: slot, number, balance,
                                     active until, SMS today / 7 days / all, earned
    sim_balance  sim                 ask the balance of the SIM in slot or with ICCID sim now

Every string inside ``result`` and ``data`` that came from outside (SMS text, senders,
modem answers) is untrusted: a client must display it as plain text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.errors import ControlError

MAX_LINE = 1 << 20  # one answer or event line; a snapshot of 128 modems is ~100 KiB
MAX_REQUEST = 64 * 1024  # one request line; the longest real one (a block rule) is < 1 KiB
MAX_DEPTH = 8  # JSON nesting of a request; real ones are 1 deep (an object of scalars)
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
    "health": ((), ()),
    "subscribe": ((), ()),
    "messages": ((), ("limit", "query", "before")),
    "message": (("message_id",), ()),
    "outbox": ((), ("state",)),
    "rescan": ((), ()),
    "reset_modem": (("slot",), ()),
    "set_number": (("iccid", "number"), ()),
    "trace": (("slot", "on"), ()),
    "block_rules": ((), ()),
    "preview_block_rule": ((), ("name", "sender", "text")),
    "add_block_rule": (("name",), ("sender", "text", "force")),
    "remove_block_rule": (("name",), ()),
    "retry": ((), ("message_id", "all_dead")),
    "takeoff_done": (("iccid",), ()),
    "sims": ((), ()),
    "sim_balance": (("sim",), ()),
}


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line. ``ensure_ascii`` keeps every byte printable on the wire."""
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def parse_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """(id, op, arguments) of one request line, or ControlError saying what is wrong."""
    if too_deep(line, MAX_DEPTH):
        raise ControlError(f"request nested deeper than {MAX_DEPTH} levels")
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


# A JSON string, escapes included (unrolled so that it runs in one pass); the line it runs
# on is at most MAX_REQUEST bytes.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[][{}]")


def too_deep(line: bytes, limit: int) -> bool:
    """Whether the arrays and objects of ``line`` nest deeper than ``limit``.

    ``json.loads`` recurses once per level and raises RecursionError near 1,000: counted
    here first, without recursion, brackets inside strings not counted."""
    depth = 0
    for bracket in _BRACKET.finditer(_JSON_STRING.sub(b'""', line)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
