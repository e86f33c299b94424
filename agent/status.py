"""Plain dataclasses that describe the site's state: the vocabulary shared by the agent's
parts, ``simedge scan``/``status``, the control socket and the dashboard.

This module imports nothing of the agent but the standard library, so the dashboard may
import it (it is the only part of ``agent`` the TUI sees besides the control client).
Values here are snapshots: whoever owns a piece of state builds a new one when it changes.
"""

from __future__ import annotations

import functools
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from datetime import datetime
from enum import StrEnum
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints


class ModemState(StrEnum):
    """Where a modem is in its life, as a person on site would want it said."""

    PROBING = "probing"  # found, not yet known to speak AT
    STARTING = "starting"  # initialising, identifying the SIM
    READY = "ready"  # receiving SMS
    RECOVERING = "recovering"  # on the recovery ladder (the fault says why)
    FAILED = "failed"  # gave up for now; retried on a back-off
    GONE = "gone"  # unplugged


class SimState(StrEnum):
    READY = "ready"
    ABSENT = "absent"  # no SIM in the modem (CME 10, +CPIN: NOT INSERTED)
    LOCKED = "locked"  # PIN or PUK required: a person must act
    BUSY = "busy"  # SIM busy / initialising
    ERROR = "error"
    UNKNOWN = "unknown"


class NumberSource(StrEnum):
    """Where the SIM's own number came from (most SIMs do not store it)."""

    CNUM = "cnum"
    USSD = "ussd"
    MANUAL = "manual"
    SMS_PROBE = "sms-probe"  # an SMS this SIM sent to another SIM of the site
    UNKNOWN = "unknown"


class RuleSource(StrEnum):
    """Where a block rule lives, which says where it can be removed."""

    CONFIG = "config"  # the configuration file: removed by editing it
    ADDED = "added"  # added at run time (dashboard, CLI): removed the same ways


@dataclass(frozen=True)
class BlockRuleStatus:
    """A block rule in force. Patterns are regular expressions a person wrote."""

    name: str
    source: RuleSource
    sender: str | None = None
    text: str | None = None
    timing_out: bool = False  # ran out of time on an SMS since the agent started


@dataclass(frozen=True)
class BlockRuleTrial:
    """What a rule would have done to the last stored SMS (the answer to a preview):
    ``withheld`` of ``checked``; ``timed_out`` of them took too long; ``stored`` were asked
    for. A rule that ``withholds_most`` is added only when a person confirms it."""

    withheld: int
    checked: int
    timed_out: int
    stored: int
    withholds_most: bool
    summary: str  # the same in words: "would have withheld 3 of the last 200 SMS"


@dataclass(frozen=True)
class PortInfo:
    """One serial device and what is known of it before anyone talks to it."""

    device: str  # the path we open (/dev/ttyUSB3, or a by-path symlink)
    by_path: str | None = None  # /dev/serial/by-path name, the physical identity
    usb_parent: str | None = None  # e.g. "usb-0:1.2.3": groups a device's interfaces
    interface: int | None = None  # USB interface number (bInterfaceNumber)
    vid_pid: str | None = None  # "2c7c:0125"
    role: str = "unknown"  # "at", "diag", "nmea", "silent", "unknown"
    why: str = ""  # for ignored ports: why


@dataclass(frozen=True)
class ModemStatus:
    """One modem (one physical slot) as the agent knows it now."""

    slot: str
    label: str | None = None
    ports: tuple[str, ...] = ()
    at_port: str | None = None
    state: ModemState = ModemState.PROBING
    fault: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    imei: str | None = None
    sim_state: SimState = SimState.UNKNOWN
    iccid: str | None = None
    imsi: str | None = None
    number: str | None = None
    number_source: NumberSource = NumberSource.UNKNOWN
    operator: str | None = None  # MCC+MNC digits of the serving network or the IMSI
    operator_name: str | None = None
    signal_dbm: int | None = None
    signal_bars: int | None = None
    registration: str | None = None  # "home", "roaming", "searching", "denied", ...
    registered: bool = False
    storage_used: int | None = None
    storage_total: int | None = None
    # The SIM's upkeep (agent.modem.upkeep): the last balance read by USSD (amount,
    # currency, unix time) and, where a keep-alive policy applies, its deadline.
    balance: float | None = None
    balance_currency: str | None = None
    balance_at: float | None = None
    active_until: float | None = None
    updated_at: float = 0.0  # unix time of this snapshot

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


@dataclass(frozen=True)
class BalanceAnswer:
    """One balance question to a SIM and what came of it: the amount read, or ``error``
    saying why none was; ``answer`` is the operator's text as decoded, kept either way."""

    iccid: str
    at: float  # unix time
    slot: str | None
    code: str
    amount: float | None
    currency: str | None
    answer: str | None
    error: str | None


@dataclass(frozen=True)
class KeepaliveAction:
    """One keep-alive done for a SIM (``action``: "ussd CODE" or "sms NUMBER"; ``answer``:
    the USSD text or "+CMGS: <reference>"); ``error`` None: it worked, else why not."""

    iccid: str
    at: float  # unix time
    slot: str | None
    action: str
    answer: str | None
    error: str | None


@dataclass(frozen=True)
class SimStayRecord:
    """A SIM in one slot from ``since`` to ``until`` (unix times)."""

    slot: str
    since: float
    until: float


@dataclass(frozen=True)
class SimRow:
    """One SIM ever seen on the site, by ICCID, across swaps and restarts: what
    ``simedge sims`` prints and the dashboard's SIMs screen shows.

    ``slot`` is where it is now or was last (``in_slot``: seen there by the running
    agent). Balance: the newest amount read and when; ``balance_error`` is the newest
    question's failure when it came after that amount. ``active_until`` only where a
    keep-alive policy covers the SIM's network. ``earned`` is what OnlineSim reported
    when it listed the number for take-off. ``calls`` counts the calls that rang on it
    (recorded and rejected, docs/sims.md), ``last_caller`` the newest one's caller ID
    (None: withheld or no call). ``probe_state`` is its newest number probe's state (an
    SMS to another SIM of the site that tells its number) and ``probe_error`` why it
    failed, when it did.
    """

    iccid: str
    slot: str | None
    in_slot: bool
    number: str | None
    number_source: str | None
    operator: str | None
    first_seen: float
    last_seen: float
    balance: float | None = None
    balance_currency: str | None = None
    balance_at: float | None = None
    balance_low: bool = False
    balance_error: str | None = None
    active_until: float | None = None
    keepalive_at: float | None = None
    keepalive_error: str | None = None
    sms_today: int = 0
    sms_7d: int = 0
    sms_all: int = 0
    earned: float | None = None
    calls: int = 0
    last_caller: str | None = None
    last_call_at: float | None = None
    probe_state: str | None = None
    probe_error: str | None = None
    stays: tuple[SimStayRecord, ...] = ()

    @property
    def swaps(self) -> int:
        """Times the SIM was seen in another slot than before."""
        return max(0, len(self.stays) - 1)

    def to_json(self) -> dict[str, Any]:
        return {**to_json(self), "swaps": self.swaps}

    def cells(self, now: float) -> tuple[str, ...]:
        """The row as ``simedge sims`` and the SIMs screen print it, in ``SIM_COLUMNS``."""
        slot = self.slot or "-"
        if self.slot and not self.in_slot:
            slot = f"({self.slot})"
        if self.balance is None:
            balance = "unreadable" if self.balance_error else "?"
        else:
            balance = f"{self.balance:.2f} {self.balance_currency or ''}".strip()
            if self.balance_low:
                balance += " LOW"
        active = "-" if self.active_until is None else _day(self.active_until)
        if self.active_until is not None and self.active_until < now:
            active += "!"
        return (
            slot,
            self.number or "?",
            balance,
            active,
            str(self.sms_today),
            str(self.sms_7d),
            str(self.sms_all),
            "-" if self.earned is None else f"{self.earned:g}",
            str(self.calls),
            self.last_caller or "-",
            self.number_source or "-",
            self._probe_cell(),
            self.operator or "-",
            self.iccid,
        )

    def details(self, now: float) -> str:
        """Every column of the row as ``heading value`` pairs: the SIMs screen prints the
        selected SIM this way, so that what does not fit 80 columns is still read."""
        return "  ".join(
            f"{heading.lower()} {cell}"
            for (heading, _), cell in zip(SIM_COLUMNS, self.cells(now), strict=True)
        )

    def _probe_cell(self) -> str:
        if self.probe_state is None:
            return "-"
        if self.probe_error:
            return f"{self.probe_state}: {self.probe_error}"
        return self.probe_state


SIM_COLUMNS: tuple[tuple[str, int], ...] = (
    # (heading, width) of SimRow.cells: what a person reads first goes left; at 80
    # columns the SIMs screen shows the rest of the selected row below the table
    # (SimRow.details); the ICCID, which identifies the card, last.
    ("SLOT", 7),
    ("NUMBER", 16),  # E.164: "+" and up to 15 digits, never cut
    ("BALANCE", 12),
    ("UNTIL", 11),
    ("TODAY", 5),
    ("7D", 4),
    ("ALL", 5),
    ("EARNED", 6),
    ("CALLS", 5),
    ("CALLER", 16),
    ("SOURCE", 6),
    ("PROBE", 10),
    ("NET", 6),
    ("ICCID", 20),
)
SIM_LEGEND = (
    "(slot): out of the hub, last seen there. LOW: balance below [sims] low_balance."
    " UNTIL: active until (keep-alive); ! past it. CALLER: the last call's."
    " PROBE: the last number probe by SMS (failed: why)"
)


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class ScanResult:
    """What one discovery pass found: modems, and the ports it left alone with why."""

    modems: tuple[ModemStatus, ...] = ()
    ignored: tuple[PortInfo, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "modems": [m.to_json() for m in self.modems],
            "ignored": to_json(self.ignored),
        }


class UplinkCondition(StrEnum):
    OK = "ok"
    BACKING_OFF = "backing_off"  # the link is flaky: retrying with back-off
    PAUSED = "paused"  # an account error (401/403/405): a person must act
    STORE_NOT_WRITABLE = "store_not_writable"  # nothing is sent until the store writes again


@dataclass(frozen=True)
class UplinkStatus:
    state: UplinkCondition = UplinkCondition.OK
    code: str | None = None  # the API code or network error behind the state
    since: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    next_attempt_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


class PublicUrlState(StrEnum):
    """Whether OnlineSim can reach the webhook by the configured public URL."""

    UNKNOWN = "unknown"  # not checked yet
    UP = "up"  # the agent reached itself there
    DOWN = "down"  # the last checks failed: tunnel or port forward broken


@dataclass(frozen=True)
class PublicUrlStatus:
    """The site's public webhook address (``[webhook] public_url``) and whether it works."""

    url: str  # the webhook URL to paste into OnlineSim, with TOKEN in place of the secret
    state: PublicUrlState = PublicUrlState.UNKNOWN
    since: float | None = None  # when ``state`` began
    checked_at: float | None = None
    problem: str | None = None  # why the last check failed

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


@dataclass(frozen=True)
class OutboxStatus:
    pending: int = 0
    backing_off: int = 0
    dead: int = 0
    blocked: int = 0
    assembling: int = 0  # multipart messages waiting for parts
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None

    def with_uplink_error(self, uplink: UplinkStatus) -> OutboxStatus:
        """The last error is the newer of the last failed attempt and the uplink's last
        error: a pause on a wrong key fails no attempt (no message is tried while paused),
        and neither does a refused numbers list, yet each is why nothing goes up."""
        if uplink.last_error is None or uplink.last_error_at is None:
            return self
        if self.last_error_at is not None and self.last_error_at >= uplink.last_error_at:
            return self
        return replace(self, last_error=uplink.last_error, last_error_at=uplink.last_error_at)


@dataclass(frozen=True)
class NumbersOnline:
    """The numbers list OnlineSim last accepted (answer 1 to sendNumbersOnline): what
    "online" means on the dashboard, in ``simedge status`` and on /metrics. No such list
    yet is ``None`` where this is used, shown as "not yet sent"."""

    count: int
    accepted_at: float


# Names of the facts persisted in the database's site_fact table (JSON of the shapes
# above), for the readers that cannot ask the running agent.
FACT_UPLINK = "uplink"  # UplinkStatus, with the last error of this run or an earlier one
FACT_NUMBERS_ONLINE = "numbers_online"  # NumbersOnline


@dataclass(frozen=True)
class TakeoffMark:
    """A number OnlineSim says has earned enough: swap the SIM in this slot."""

    iccid: str
    slot: str | None
    number: str | None
    sum_rub: float
    marked_at: float


@dataclass(frozen=True)
class LogEvent:
    """One line of the site's log (what the dashboard's Log screen shows)."""

    at: float
    level: str  # "info", "warning", "alarm"
    kind: str  # "modem", "uplink", "numbers", "takeoff", "store", ...
    text: str
    slot: str | None = None
    iccid: str | None = None


@dataclass(frozen=True)
class SlotActivity:
    """Per-slot figures for the overview and its sparklines."""

    sms_today: int = 0
    last_sms_at: float | None = None
    sms_per_hour: tuple[int, ...] = ()  # the last 24 hours, oldest first
    signal_per_hour: tuple[int | None, ...] = ()  # dBm, the last 24 hours, oldest first


@dataclass(frozen=True)
class SiteSnapshot:
    """Everything the dashboard's overview needs, in one answer of the control socket."""

    taken_at: float
    modems: tuple[ModemStatus, ...] = ()
    activity: dict[str, SlotActivity] = field(default_factory=dict)  # by slot
    uplink: UplinkStatus = field(default_factory=UplinkStatus)
    outbox: OutboxStatus = field(default_factory=OutboxStatus)
    takeoff: tuple[TakeoffMark, ...] = ()
    numbers_online: NumbersOnline | None = None  # None: no list accepted yet
    clock_synced: bool | None = None
    disk_free_bytes: int | None = None
    forwarded_per_hour: tuple[int, ...] = ()  # the site, last 24 hours, oldest first
    latency_per_hour: tuple[float | None, ...] = ()  # median seconds, last 24 hours
    events: tuple[LogEvent, ...] = ()  # newest last
    public_url: PublicUrlStatus | None = None  # None: no public URL configured

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


@dataclass(frozen=True)
class MessageSummary:
    """One SMS as the Messages and Outbox screens list it. Text and sender are untrusted."""

    id: int
    sender: str
    text: str
    state: str  # "assembling", "pending", "sent", "dead", "blocked"
    received_at: float
    slot: str | None = None
    iccid: str | None = None
    number: str | None = None  # the SIM's own number
    scts: str | None = None  # ISO 8601 with the SMSC's offset
    attempts: int = 0
    next_attempt_at: float | None = None
    sent_at: float | None = None
    complete: bool = True
    missing_parts: str = ""
    blocked_rule: str | None = None
    last_error: str | None = None
    # What the decoder salvaged around (docs/pdu-decoder.md), one fault a line; None if none.
    problems: str | None = None


@dataclass(frozen=True)
class PduRecord:
    pdu_hex: str
    read_at: float
    storage: str
    index: int | None
    status: str
    error: str | None = None


@dataclass(frozen=True)
class AttemptRecord:
    at: float
    outcome: str  # "sent", "retry", "dead"
    http_status: int | None = None
    body: str | None = None


@dataclass(frozen=True)
class MessageDetail:
    message: MessageSummary
    pdus: tuple[PduRecord, ...] = ()
    attempts: tuple[AttemptRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


# Reading these shapes back from JSON (the control socket sends ``to_json``/``asdict``
# output). One generic reader driven by the type hints, so a field added to a dataclass
# above is read back without touching this code. Keys the reader does not know are
# ignored: an older dashboard keeps working against a newer agent.

_T = TypeVar("_T")


def to_json(value: Any) -> Any:
    """Any of the shapes above (or a list, tuple or dict of them, or a plain JSON value) as
    JSON-ready data: what the control socket sends and :func:`read_json` reads back.

    Walks the fields itself rather than through ``dataclasses.asdict``, which deep-copies
    every value first: a snapshot of 128 modems took 60 ms that way, the event loop's
    time."""
    if isinstance(value, StrEnum):  # before str: a StrEnum is a str
        return str(value)
    if value is None or isinstance(value, str | int | float):
        return value
    names = _field_names(type(value))
    if names is not None:
        return {name: to_json(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass, None for any other type."""
    return tuple(item.name for item in fields(cls)) if is_dataclass(cls) else None


def read_json(hint: Any, value: Any, *, where: str) -> Any:
    """``value`` read as the type ``hint`` (a dataclass above, ``tuple[X, ...]``, ``str``,
    ``X | None``...); ValueError names the field at fault, starting with ``where``."""
    return _read(hint, value, where)


def from_json(cls: type[_T], data: Any, *, where: str = "") -> _T:
    """Build the dataclass ``cls`` from its JSON form; ValueError names the field at fault.

    ``from_json(SiteSnapshot, answer)`` gives typed objects all the way down: enums,
    tuples, nested dataclasses and the ``activity`` dictionary."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    values: dict[str, Any] = {}
    for name, hint, required in _shape(cls):
        if name not in data:
            if required:
                raise ValueError(f"{where}.{name}: missing")
            continue
        values[name] = _read(hint, data[name], f"{where}.{name}")
    return cls(**values)


@functools.cache  # resolving the hints is most of the work, and a dashboard reads
def _shape(cls: type) -> tuple[tuple[str, Any, bool], ...]:  # 64 modems per snapshot
    """(field name, type hint, required) of each field of the dataclass ``cls``."""
    hints = get_type_hints(cls)
    return tuple(
        (item.name, hints[item.name], item.default is MISSING and item.default_factory is MISSING)
        for item in fields(cls)
    )


def _read(hint: Any, value: Any, where: str) -> Any:
    origin, arguments = get_origin(hint), get_args(hint)
    if origin in (UnionType, Union):
        if value is None and type(None) in arguments:
            return None
        (inner,) = [a for a in arguments if a is not type(None)]
        return _read(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        inner = arguments[0]
        return tuple(_read(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        inner = arguments[1]
        return {str(k): _read(inner, v, f"{where}[{k!r}]") for k, v in value.items()}
    if is_dataclass(hint):
        return from_json(hint, value, where=where)  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        try:
            return hint(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not one of {[str(m) for m in hint]}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


@dataclass(frozen=True)
class ProbeRecord:
    """One attempt to learn a SIM's number by SMS (agent.modem.probe): ``state`` is
    sending, sent, found or failed; ``reason`` says why it failed (a +CMS ERROR code and
    its meaning, no delivery in time, a SIM that cannot send)."""

    id: int
    iccid: str
    slot: str | None
    target_iccid: str
    target_number: str
    state: str
    started_at: float
    sent_at: float | None
    finished_at: float | None
    reason: str | None
    found_number: str | None


@dataclass(frozen=True)
class CallRecord:
    """A call that rang on a SIM and was rejected: ``caller`` None when withheld;
    ``rejected_with`` the command that ended it (None: the modem refused every one);
    ``message_id`` the message that forwarded it to OnlineSim, when ``[calls] forward``."""

    id: int
    iccid: str
    slot: str | None
    caller: str | None
    at: float
    rejected_with: str | None
    message_id: int | None
