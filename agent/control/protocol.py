"""The control protocol: JSON lines over the agent's unix socket, and its one schema.

The dashboard (``simedge tui``) and the CLI (``simedge sim set-number``, ``simedge outbox
retry``...) talk to the running agent through it. One JSON object per line, UTF-8, each
way. A request line is at most ``MAX_REQUEST`` bytes and nested at most ``MAX_DEPTH``
deep (requests are flat; the bound is checked before the JSON parser recurses); an answer
or event line is at most ``MAX_LINE`` bytes.

Everything that crosses the socket is declared here, once, as types (as zigpy-znp
declares each command with its request and response schema): every side (the agent's
server, the client, the dashboard, the CLI, the tests' stand-in site) builds and reads
lines through these definitions, so none can speak a dialect of its own.

**Operations.** :class:`Op` names them; each has one request class, a frozen dataclass
whose fields are its arguments and whose base ``Request[R]`` says the type ``R`` of its
result (a shape of :mod:`agent.status`, or a sentence for a person). A request line is the
envelope ``id`` (any JSON value, echoed back) and ``op``, then the fields::

    {"id": 1, "op": "snapshot"}
    {"id": 2, "op": "reset_modem", "slot": "1-1.2"}

Answers::

    {"id": 1, "ok": true, "result": {...}}
    {"id": 2, "ok": false, "error": "no modem in slot 1-1.2"}

A request is read strictly: an unknown op or argument, a missing argument, or one of the
wrong type is refused with an error that names it (``reset_modem.slot: expected str``); so
are what JSON or Python would let through but the agent cannot keep: NaN and Infinity, an
integer past 64 bits, a string with a lone surrogate.

**Events.** ``subscribe`` answers ``ok`` once the subscriber is registered (a snapshot
taken after that misses nothing), then the connection carries ``{"event": KIND, "data":
...}`` lines until it closes. :data:`EVENT_DATA` says, per :class:`EventKind`, which shape
the data has, or that the event carries none: a data-less event says "this changed, ask
again" (a burst of 100 SMS is one ``message`` event, not 100 rows). The agent never waits
for a slow reader: each subscriber has a bounded queue; when it overflows the subscriber
gets ``overflow`` and should take a fresh snapshot.

**Adding an operation** is one member of :class:`Op`, one request class below, and one
method of the agent marked ``@handles(TheRequest)``; adding an event is one member of
:class:`EventKind` and its entry in :data:`EVENT_DATA`. ``tests/test_layering.py`` checks
that no op or event name is spelled as a string anywhere else in ``agent/`` and ``tui/``.

Every string inside ``result`` and ``data`` that came from outside (SMS text, senders,
modem answers) is untrusted: a client must display it as plain text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, fields, is_dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from agent.errors import ControlError
from agent.status import (
    BlockRuleStatus,
    BlockRuleTrial,
    MessageDetail,
    MessageSummary,
    ModemStatus,
    PublicUrlStatus,
    SimRow,
    SiteSnapshot,
    UplinkStatus,
    from_json,
    read_json,
    to_json,
)

MAX_LINE = 1 << 20  # one answer or event line; a snapshot of 128 modems is ~100 KiB
MAX_REQUEST = 64 * 1024  # one request line; the longest real one (a block rule) is < 1 KiB
MAX_DEPTH = 8  # JSON nesting of a request; real ones are 1 deep (an object of scalars)
SUBSCRIBER_QUEUE = 1000  # events buffered per subscriber before "overflow"
ENVELOPE = ("id", "op")  # so no operation has an argument of either name


class Op(StrEnum):
    SNAPSHOT = "snapshot"
    HEALTH = "health"
    SUBSCRIBE = "subscribe"
    MESSAGES = "messages"
    MESSAGE = "message"
    OUTBOX = "outbox"
    RESCAN = "rescan"
    RESET_MODEM = "reset_modem"
    SET_NUMBER = "set_number"
    TRACE = "trace"
    BLOCK_RULES = "block_rules"
    PREVIEW_BLOCK_RULE = "preview_block_rule"
    ADD_BLOCK_RULE = "add_block_rule"
    REMOVE_BLOCK_RULE = "remove_block_rule"
    RETRY = "retry"
    TAKEOFF_DONE = "takeoff_done"
    SIMS = "sims"
    SIM_BALANCE = "sim_balance"


R = TypeVar("R")

REQUESTS: dict[Op, type[Request[Any]]] = {}  # filled by each request class as it is made


class Request(Generic[R]):
    """The base of every request class: ``class X(Request[Result], op=Op.X)``.

    ``OP`` is the operation's name on the wire, ``RESULT`` the type its answer is read as.
    Defining the class registers it in :data:`REQUESTS`; a second class for one op is an
    error at import, so one op has one definition."""

    OP: ClassVar[Op]
    RESULT: ClassVar[Any]

    def __init_subclass__(cls, *, op: Op, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if op in REQUESTS:
            raise TypeError(f"{cls.__name__}: op {op} is already {REQUESTS[op].__name__}")
        (base,) = [b for b in cls.__orig_bases__ if get_origin(b) is Request]  # type: ignore[attr-defined]
        cls.OP = op
        (cls.RESULT,) = get_args(base)
        REQUESTS[op] = cls

    def arguments(self) -> dict[str, Any]:
        """The request's fields as JSON, without the envelope."""
        assert is_dataclass(self)
        data: dict[str, Any] = to_json(self)
        return data


@dataclass(frozen=True)
class TakeSnapshot(Request[SiteSnapshot], op=Op.SNAPSHOT):
    """The whole site: modems, uplink, outbox, take-off, log."""


@dataclass(frozen=True)
class CheckHealth(Request[dict[str, Any]], op=Op.HEALTH):
    """What /healthz says: agent ok, modem counts, uplink state, store writable."""


@dataclass(frozen=True)
class Subscribe(Request[None], op=Op.SUBSCRIBE):
    """Live events on this connection from now on (see the module's docstring)."""


@dataclass(frozen=True)
class ListMessages(Request[tuple[MessageSummary, ...]], op=Op.MESSAGES):
    """Recent messages, newest first; ``query`` filters by sender or the SIM's number;
    ``before`` (a message id) pages back."""

    limit: int = 100
    query: str | None = None
    before: int | None = None


@dataclass(frozen=True)
class ShowMessage(Request[MessageDetail], op=Op.MESSAGE):
    """One message with its raw PDU parts and its delivery attempts."""

    message_id: int


@dataclass(frozen=True)
class ListOutbox(Request[tuple[MessageSummary, ...]], op=Op.OUTBOX):
    """Pending, backing-off and dead messages (or those of one ``state``)."""

    state: str | None = None


@dataclass(frozen=True)
class Rescan(Request[str], op=Op.RESCAN):
    """Run discovery now."""


@dataclass(frozen=True)
class ResetModem(Request[str], op=Op.RESET_MODEM):
    """Climb the recovery ladder from a +CFUN reset."""

    slot: str


@dataclass(frozen=True)
class SetNumber(Request[str], op=Op.SET_NUMBER):
    """A person's word for a SIM's own number."""

    iccid: str
    number: str


@dataclass(frozen=True)
class Trace(Request[str], op=Op.TRACE):
    """The raw AT trace of a slot's port, on or off."""

    slot: str
    on: bool


@dataclass(frozen=True)
class ListBlockRules(Request[tuple[BlockRuleStatus, ...]], op=Op.BLOCK_RULES):
    """The block rules in force, with where each lives."""


@dataclass(frozen=True)
class PreviewBlockRule(Request[BlockRuleTrial], op=Op.PREVIEW_BLOCK_RULE):
    """How many of the last stored SMS a rule would have withheld (the name may come
    later: a preview is asked before the person names the rule)."""

    name: str = "new rule"
    sender: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class AddBlockRule(Request[str], op=Op.ADD_BLOCK_RULE):
    """Keep matching SMS, never upload them. Refused when it would withhold most recent
    SMS, unless ``force`` (a person confirmed)."""

    name: str
    sender: str | None = None
    text: str | None = None
    force: bool = False


@dataclass(frozen=True)
class RemoveBlockRule(Request[str], op=Op.REMOVE_BLOCK_RULE):
    """Remove a rule added at run time (configured ones live in the file)."""

    name: str


@dataclass(frozen=True)
class Retry(Request[str], op=Op.RETRY):
    """Send a dead letter again: one (``message_id``) or all of them (``all_dead``)."""

    message_id: int | None = None
    all_dead: bool = False

    def __post_init__(self) -> None:
        if (self.message_id is None) == (not self.all_dead):
            raise ValueError("retry: give message_id or all_dead, not both or neither")


@dataclass(frozen=True)
class TakeoffDone(Request[str], op=Op.TAKEOFF_DONE):
    """The SIM was swapped by hand: clear its take-off mark."""

    iccid: str


@dataclass(frozen=True)
class ListSims(Request[tuple[SimRow, ...]], op=Op.SIMS):
    """Every SIM ever seen, by ICCID: slot, number and its source, balance, active until,
    calls, SMS today / 7 days / all, earned."""


@dataclass(frozen=True)
class AskBalance(Request[str], op=Op.SIM_BALANCE):
    """Ask the balance of the SIM in slot ``sim`` (or with ICCID ``sim``) now, by USSD."""

    sim: str


class EventKind(StrEnum):
    MODEM = "modem"
    UPLINK = "uplink"
    PUBLIC_URL = "public_url"
    MESSAGE = "message"
    OUTBOX = "outbox"
    TAKEOFF = "takeoff"
    OVERFLOW = "overflow"


# What each event carries. None: no data, "ask again" (the agent coalesces these, at most
# one per kind per loop turn, so a burst costs a dashboard one refresh).
EVENT_DATA: dict[EventKind, type | None] = {
    EventKind.MODEM: ModemStatus,  # one modem changed: its whole status
    EventKind.UPLINK: UplinkStatus,
    EventKind.PUBLIC_URL: PublicUrlStatus,
    EventKind.MESSAGE: None,  # messages came or changed state: list them again
    EventKind.OUTBOX: None,  # an upload's outcome: the outbox's counts moved
    EventKind.TAKEOFF: None,  # a take-off mark was set or cleared
    EventKind.OVERFLOW: None,  # events were dropped for this subscriber: take a snapshot
}


@dataclass(frozen=True)
class Event:
    """One event, its ``data`` typed as :data:`EVENT_DATA` says (None when it has none)."""

    kind: EventKind
    data: Any = None


# -- lines ----------------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line. ``ensure_ascii`` keeps every byte printable on the wire."""
    return _dumps(message) + b"\n"


def encode_request(request_id: Any, request: Request[Any]) -> bytes:
    return encode({"id": request_id, "op": str(request.OP), **request.arguments()})


def parse_request(line: bytes) -> tuple[Any, Request[Any]]:
    """(id, request) of one request line, or ControlError saying what is wrong."""
    if too_deep(line, MAX_DEPTH):
        raise ControlError(f"request nested deeper than {MAX_DEPTH} levels")
    message = _loads(line, "request")
    if not isinstance(message, dict):
        raise ControlError("request must be a JSON object")
    arguments = {k: v for k, v in message.items() if k not in ENVELOPE}
    return message.get("id"), read_request(message.get("op"), arguments)


def read_request(op: Any, arguments: dict[str, Any]) -> Request[Any]:
    """The request ``op`` with ``arguments``; ControlError names what is wrong."""
    if not isinstance(op, str) or op not in REQUESTS:
        raise ControlError(f"unknown op {op!r}; known: {', '.join(REQUESTS)}")
    cls = REQUESTS[Op(op)]
    known = {item.name for item in fields(cls)}  # type: ignore[arg-type]
    unknown = [name for name in arguments if name not in known]
    if unknown:
        raise ControlError(f"{op}: unknown argument {', '.join(unknown)}")
    try:
        request: Request[Any] = from_json(cls, arguments, where=op)
    except (ValueError, TypeError) as exc:
        raise ControlError(str(exc)) from exc
    for item in fields(request):  # type: ignore[arg-type]
        _check_keepable(f"{op}.{item.name}", getattr(request, item.name))
    return request


_INT64 = range(-(2**63), 2**63)  # what SQLite keeps


def _check_keepable(where: str, value: Any) -> None:
    """ControlError for what the schema's types allow but the agent cannot keep: an integer
    past 64 bits (SQLite would refuse it deep in a handler), a string with a lone surrogate
    (not UTF-8). Requests only: answers and events are the agent's own."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        raise ControlError(f"{where}: {str(value)[:40]} is out of range (a 64-bit integer)")
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ControlError(f"{where}: not valid text (a lone surrogate)") from None


def encode_answer(
    request_id: Any, request: Request[R], result: R, shared: SharedResult | None = None
) -> bytes:
    """The answer line of a handled request; TypeError when ``result`` is not the request's
    result type (a handler bug: the client would not understand it)."""
    if not conforms(request.RESULT, result):
        expected = getattr(request.RESULT, "__name__", str(request.RESULT))
        raise TypeError(f"{request.OP} answered a {type(result).__name__}, not {expected}")
    result_json = shared.json(result) if shared is not None else _dumps(to_json(result))
    # The layout of encode({"id": ..., "ok": True, "result": ...}), the result spliced in.
    return b'{"id":' + _dumps(request_id) + b',"ok":true,"result":' + result_json + b"}\n"


class SharedResult:
    """The JSON of the last result answered, reused while the same object is answered
    again: every client waiting on one coalesced snapshot gets the same object, and its
    JSON (13 ms for 128 modems) is made once, not once per client."""

    def __init__(self) -> None:
        self._last: tuple[Any, bytes] | None = None

    def json(self, result: Any) -> bytes:
        if self._last is not None and self._last[0] is result:
            return self._last[1]
        data = _dumps(to_json(result))
        self._last = (result, data)
        return data


def _loads(line: bytes, what: str) -> Any:
    """One line's JSON; ControlError for anything else. JSON has no NaN or Infinity (Python
    reads them, and would echo a NaN ``id`` back as a line no other JSON reader takes); a
    number past Python's 4,300 digits is a ValueError of its own, not a JSONDecodeError."""
    try:
        return json.loads(line, parse_constant=_not_json)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise ControlError(f"{what} is not a JSON line: {exc}") from exc


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def encode_refusal(request_id: Any, error: str) -> bytes:
    return encode({"id": request_id, "ok": False, "error": error})


def read_result(request: Request[R], answer: Any) -> R:
    """The result of an answer line (already parsed), typed; ControlError for a refusal or
    for a result that is not the request's result type (naming the field at fault)."""
    if not isinstance(answer, dict):
        raise ControlError(f"the agent's answer to {request.OP} is not an object: {answer!r:.200}")
    if not answer.get("ok"):
        raise ControlError(answer.get("error") or f"{request.OP} refused")
    try:
        result: R = read_json(request.RESULT, answer.get("result"), where=str(request.OP))
    except ValueError as exc:
        raw = answer.get("result")
        raise ControlError(
            f"the agent's answer is not understood: {exc} (raw: {raw!r:.200})"
        ) from exc
    return result


def encode_event(kind: EventKind, data: Any = None) -> bytes:
    """One event line; TypeError when ``data`` is not what :data:`EVENT_DATA` says."""
    shape = EVENT_DATA[kind]
    if shape is None and data is not None:
        raise TypeError(f"a {kind} event carries no data, not {type(data).__name__}")
    if shape is not None and not isinstance(data, shape):
        raise TypeError(f"a {kind} event carries a {shape.__name__}, not {type(data).__name__}")
    return encode({"event": str(kind), "data": to_json(data)})


def parse_event(line: bytes) -> Event:
    """One event line, its data typed; ControlError names what is wrong (an unknown kind
    too: an agent newer than this client)."""
    message = _loads(line, "event")
    if not isinstance(message, dict):
        raise ControlError(f"event is not an object: {message!r:.200}")
    kind = message.get("event")
    if kind not in EVENT_DATA:
        raise ControlError(f"unknown event {kind!r}")
    shape, data = EVENT_DATA[EventKind(kind)], message.get("data")
    if shape is None:
        if data is not None:
            raise ControlError(f"{kind} event: carries no data, got {data!r:.200}")
        return Event(EventKind(kind))
    try:
        return Event(EventKind(kind), from_json(shape, data, where=f"{kind} event"))
    except ValueError as exc:
        raise ControlError(f"{exc} (raw: {data!r:.200})") from exc


def conforms(hint: Any, value: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` at its top level (and, for a tuple, each
    item's type): enough to catch a handler that answers the wrong shape, cheap enough for
    every answer."""
    origin, arguments = get_origin(hint), get_args(hint)
    if origin is tuple:
        return isinstance(value, tuple) and all(conforms(arguments[0], v) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None) or hint is None:
        return value is None
    return isinstance(value, hint)


# -- handlers -------------------------------------------------------------------------------

Handler = Callable[[Any], Awaitable[Any]]


def handles(request_class: type[Request[Any]]) -> Callable[[Callable[..., Any]], Any]:
    """Mark a method as the handler of one operation: ``@handles(ResetModem) async def
    reset_modem(self, request: ResetModem) -> str``. :func:`handler_table` collects them."""

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        method.handles_op = request_class.OP  # type: ignore[attr-defined]
        return method

    return mark


def _marked(cls: type) -> Iterator[tuple[Op, str]]:
    for name in dir(cls):
        op = getattr(getattr(cls, name, None), "handles_op", None)
        if isinstance(op, Op):
            yield op, name


def handled_ops(*classes: type) -> list[Op]:
    """The operations the ``@handles`` methods of ``classes`` serve (repeats included)."""
    return [op for cls in classes for op, _ in _marked(cls)]


def handler_table(*handlers: object) -> dict[Op, Handler]:
    """Op -> bound handler, from the ``@handles`` methods of ``handlers``; TypeError when
    two of them handle one op."""
    table: dict[Op, Handler] = {}
    for handler in handlers:
        for op, name in _marked(type(handler)):
            if op in table:
                raise TypeError(f"op {op} is handled twice ({name} of {type(handler).__name__})")
            table[op] = getattr(handler, name)
    return table


# A bracket, or a JSON string (escapes included) to step over whole. Possessive, and the
# closing quote optional: a string never closed ends the scan instead of failing and being
# looked for again from each quote inside it, which made one 64 KiB line of escaped quotes
# cost 34 s. One pass over the line, whatever it holds.
_BRACKET_OR_STRING = re.compile(rb'[][{}]|"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)


def too_deep(line: bytes, limit: int) -> bool:
    """Whether the arrays and objects of ``line`` nest deeper than ``limit``.

    ``json.loads`` recurses once per level and raises RecursionError near 1,000: counted
    here first, without recursion, brackets inside strings not counted."""
    depth = 0
    for token in _BRACKET_OR_STRING.finditer(line):
        first = token.group()[:1]
        if first in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif first in (b"]", b"}"):
            depth -= 1
    return False
