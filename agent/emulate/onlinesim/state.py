"""What the OnlineSim stand-in knows and the rules it answers by, without any I/O.

Every API method is a pure function of the state, the request and the time passed in, and
returns an :class:`Answer`; the ASGI layer only turns answers into bytes. The rules are
those of docs/onlinesim-api.md;
where the documents are silent the stand-in is strict, so that a sloppy agent fails here
rather than in the field:

- a number is ``+`` and 7 to 15 digits, the first not 0;
- timestamps are unix seconds, as a JSON integer or a string of digits;
- the same number twice in one ``sendNumbersOnline`` list is ``ERROR_PARAMS``;
- ``ids`` in the answer name only the changes: a new id per added number, ``null`` per
  removed number; numbers that stay keep their id and are not repeated;
- ``addMessage`` requires non-empty ``from`` and ``message``; when both ``number`` and
  ``id`` are given they must name the same online number.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from agent.errors import EmulatorError

SEND_NUMBERS_ONLINE = "/api/resellers/sendNumbersOnline"
ADD_MESSAGE = "/api/resellers/addMessage"
TAKE_OFF_NUMBERS = "/api/resellers/takeOffNumbers"

# The HTTP status of every code the API documents.
CODE_STATUS: dict[str, int] = {
    "ERROR_NO_KEY": 401,
    "ERROR_WRONG_KEY": 401,
    "ACCOUNT_BLOCKED": 403,
    "API_ACCESS_DISABLED": 403,
    "API_ACCESS_IP": 403,
    "REQUEST_NOT_FOUND": 405,
    "NUMBER_FORMAT_ERROR": 400,
    "ERROR_DATE": 400,
    "ERROR_PARAMS": 400,
    "NO_NUMBER": 400,
}
# Codes that concern the account, not the request: the ones a test may force.
FORCEABLE_CODES = frozenset(
    ("ERROR_NO_KEY", "ERROR_WRONG_KEY", "ACCOUNT_BLOCKED", "API_ACCESS_DISABLED", "API_ACCESS_IP")
)
ERROR_BODY_FORMS = ("json", "text")
DRY_RUN_VALUE = "test1"

_NUMBER = re.compile(r"\+[1-9][0-9]{6,14}")
_DIGITS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class Answer:
    """One answer of the API: ``body`` on success, the API ``code`` on refusal."""

    status: int
    body: dict[str, Any] | None = None
    code: str | None = None

    @classmethod
    def refusal(cls, code: str) -> Answer:
        return cls(status=CODE_STATUS[code], code=code)

    @classmethod
    def success(cls, **fields: Any) -> Answer:
        return cls(status=200, body={"response": 1, **fields})


class _Refused(Exception):
    """Carries an API code out of nested validation; never leaves this module."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


@dataclass(frozen=True)
class Faults:
    """The misbehaviour the stand-in is told to show; see the package docstring."""

    error_rate: float = 0.0
    status_429_rate: float = 0.0
    reset_rate: float = 0.0
    latency: float = 0.0
    down: bool = False
    force: str | None = None
    error_body: str = "json"
    retry_after: int = 1

    def __post_init__(self) -> None:
        for name in ("error_rate", "status_429_rate", "reset_rate"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise EmulatorError(f"must be a number from 0 to 1, got {value!r}", name, value)
        if not _is_number(self.latency) or not 0.0 <= self.latency <= 3600.0:
            raise EmulatorError(
                f"must be seconds from 0 to 3600, got {self.latency!r}", "latency", self.latency
            )
        if not isinstance(self.down, bool):
            raise EmulatorError(f"must be true or false, got {self.down!r}", "down", self.down)
        if self.force is not None and self.force not in FORCEABLE_CODES:
            raise EmulatorError(
                f"must be null or one of {sorted(FORCEABLE_CODES)}, got {self.force!r}",
                "force",
                self.force,
            )
        if self.error_body not in ERROR_BODY_FORMS:
            raise EmulatorError(
                f"must be 'json' or 'text', got {self.error_body!r}", "error_body", self.error_body
            )
        if not isinstance(self.retry_after, int) or isinstance(self.retry_after, bool):
            raise EmulatorError(
                f"must be whole seconds, got {self.retry_after!r}", "retry_after", self.retry_after
            )

    def changed(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with ``changes`` applied; unknown names are an :class:`EmulatorError`."""
        unknown = set(changes) - set(self.as_dict())
        if unknown:
            raise EmulatorError(f"unknown fault setting(s) {sorted(unknown)}", "faults", changes)
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OnlineNumber:
    """A number the stand-in holds online, with the id it handed out for it."""

    number: str
    id: int
    item: dict[str, Any]
    added_at: float


@dataclass(frozen=True)
class ReceivedMessage:
    """An SMS accepted by addMessage, stamped on receipt (wall clock and monotonic) so that
    benchmarks can measure the agent's modem-to-OnlineSim latency."""

    seq: int
    number: str
    number_id: int
    sender: str
    text: str
    date: int
    received_at: float
    received_monotonic: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RecordedRequest:
    """One request to the API listener as it arrived and as it was answered.

    The API key is scrubbed from every field before the record is made. ``status`` and
    ``answer`` stay ``None`` when no answer was given (connection reset, listener down).
    ``fault`` names the injected fault that decided the answer, if any.
    """

    seq: int
    method: str
    path: str
    query: dict[str, str]
    headers: list[tuple[str, str]]
    body: str
    client: str
    received_at: float
    received_monotonic: float
    status: int | None = None
    answer: str | None = None
    fault: str | None = None
    latency_added: float = 0.0
    answered_at: float | None = None
    answered_monotonic: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WebhookCall:
    """One call of the agent's webhook: what came back and whether it was a valid list."""

    seq: int
    at: float
    duration: float
    status: int | None
    body: str
    numbers: list[dict[str, Any]] | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StandInState:
    """The online list, ids, earnings, received messages, request log and webhook calls."""

    earnings: dict[str, float] = field(default_factory=dict)
    first_id: int = 1001
    log_limit: int = 100_000
    online: dict[str, OnlineNumber] = field(default_factory=dict)
    messages: list[ReceivedMessage] = field(default_factory=list)
    requests: deque[RecordedRequest] = field(init=False)
    webhook_calls: list[WebhookCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.earnings = parse_earnings(self.earnings)
        self.requests = deque(maxlen=self.log_limit)
        self._next_id = self.first_id
        # Sequence numbers never restart (not even on reset): pollers ask for "since N".
        self._request_seq = itertools.count(1)
        self._message_seq = itertools.count(1)
        self._webhook_seq = itertools.count(1)

    # -- the API ---------------------------------------------------------------------------

    def send_numbers_online(self, body: bytes, query: Mapping[str, str], *, now: float) -> Answer:
        """Replace the online list; answer the id changes. ``test=test1`` only validates."""
        try:
            payload = _json_object(body)
            items = parse_number_items(_number_list(payload))
        except _Refused as refused:
            return Answer.refusal(refused.code)
        dry_run = DRY_RUN_VALUE in (query.get("test"), payload.get("test"))
        next_id = self._next_id
        ids: dict[str, int | None] = {}
        online: dict[str, OnlineNumber] = {}
        for item in items:
            number = item["number"]
            kept = self.online.get(number)
            if kept is None:
                ids[number] = next_id
                online[number] = OnlineNumber(number, next_id, item, now)
                next_id += 1
            else:
                online[number] = replace(kept, item=item)
        ids.update({number: None for number in self.online if number not in online})
        if not dry_run:
            self.online = online
            self._next_id = next_id
        return Answer.success(ids=ids)

    def add_message(self, body: bytes, *, now: float, now_monotonic: float) -> Answer:
        """Accept one SMS for an online number, named by ``number`` or ``id``."""
        try:
            payload = _json_object(body)
            online = self._addressed_number(payload)
            sender, text = (_required_text(payload, key) for key in ("from", "message"))
            if "date" not in payload:
                raise _Refused("ERROR_PARAMS")
            date = _timestamp(payload["date"])
        except _Refused as refused:
            return Answer.refusal(refused.code)
        if online is None:
            return Answer.refusal("NO_NUMBER")
        self.messages.append(
            ReceivedMessage(
                seq=next(self._message_seq),
                number=online.number,
                number_id=online.id,
                sender=sender,
                text=text,
                date=date,
                received_at=now,
                received_monotonic=now_monotonic,
            )
        )
        return Answer.success()

    def take_off_numbers(self, query: Mapping[str, str]) -> Answer:
        """Numbers online that earned at least ``sum`` roubles, from the earnings table.

        ``date`` ("date after number added") is checked for form but does not filter: the
        v1 document does not say which way it cuts.
        """
        try:
            threshold = _amount(query.get("sum"))
            if "date" in query and not _DIGITS.fullmatch(query["date"]):
                raise _Refused("ERROR_PARAMS")
        except _Refused as refused:
            return Answer.refusal(refused.code)
        taken = [
            {
                "number": online.number,
                "id": str(online.id),
                "sum": _money(self.earnings[online.number]),
                "country": str(online.item["country_id"]),
                "balance": _optional_text(online.item.get("balance")),
            }
            for online in self.online.values()
            if self.earnings.get(online.number, -1.0) >= threshold
        ]
        return Answer.success(list=taken)

    # -- bookkeeping -----------------------------------------------------------------------

    def new_request(self, **fields: Any) -> RecordedRequest:
        """Start the record of a request; it is logged at once and completed in place."""
        record = RecordedRequest(seq=next(self._request_seq), **fields)
        self.requests.append(record)
        return record

    def add_webhook_call(self, **fields: Any) -> WebhookCall:
        call = WebhookCall(seq=next(self._webhook_seq), **fields)
        self.webhook_calls.append(call)
        return call

    def set_earnings(self, table: object) -> None:
        self.earnings = parse_earnings(table)

    def reset(self) -> None:
        """Forget numbers, messages, earnings, requests and webhook calls. Ids and sequence
        numbers keep counting up, so that one from before the reset never names something
        else after it."""
        self.online.clear()
        self.messages.clear()
        self.earnings.clear()
        self.requests.clear()
        self.webhook_calls.clear()

    def online_view(self) -> dict[str, Any]:
        return {
            "numbers": [
                {**online.item, "id": online.id, "added_at": online.added_at}
                for online in self.online.values()
            ],
            "ids": {online.number: online.id for online in self.online.values()},
        }

    def _addressed_number(self, payload: Mapping[str, Any]) -> OnlineNumber | None:
        if "number" not in payload and "id" not in payload:
            raise _Refused("ERROR_PARAMS")
        by_number = by_id = None
        if "number" in payload:
            number = _phone_number(payload["number"])
            by_number = self.online.get(number)
            if by_number is None:
                return None
        if "id" in payload:
            wanted = _positive_int(payload["id"])
            by_id = next((o for o in self.online.values() if o.id == wanted), None)
            if by_id is None:
                return None
        if by_number is not None and by_id is not None and by_number is not by_id:
            return None
        return by_number or by_id


def parse_number_items(items: object) -> list[dict[str, Any]]:
    """Validate a list of online-number items (sendNumbersOnline and the webhook answer).

    Raises the module-private refusal with the API's code; callers outside this module use
    :func:`number_list_problem`.
    """
    if not isinstance(items, list):
        raise _Refused("ERROR_PARAMS")
    parsed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or "number" not in item:
            raise _Refused("ERROR_PARAMS")
        number = _phone_number(item["number"])
        if number in seen or "country_id" not in item:
            raise _Refused("ERROR_PARAMS")
        _positive_int(item["country_id"])
        for key in ("date_start", "date_stop"):
            if key in item:
                _timestamp(item[key])
        seen.add(number)
        parsed.append(dict(item))
    return parsed


def number_list_problem(items: object) -> str | None:
    """The API code an item list would be refused with, or ``None`` when it is valid."""
    try:
        parse_number_items(items)
    except _Refused as refused:
        return refused.code
    return None


def parse_earnings(table: object) -> dict[str, float]:
    """Validate an earnings table: number -> roubles earned (finite, not negative)."""
    if not isinstance(table, Mapping):
        raise EmulatorError("must be an object of number -> roubles", "earnings", table)
    parsed: dict[str, float] = {}
    for number, amount in table.items():
        if not isinstance(number, str) or not _NUMBER.fullmatch(number):
            raise EmulatorError(f"{number!r} is not a +digits number", "earnings", table)
        if not _is_number(amount) or not math.isfinite(amount) or amount < 0:
            raise EmulatorError(f"{number}: {amount!r} is not an amount", "earnings", table)
        parsed[number] = float(amount)
    return parsed


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _Refused("ERROR_PARAMS") from None
    if not isinstance(payload, dict):
        raise _Refused("ERROR_PARAMS")
    return payload


def _number_list(payload: Mapping[str, Any]) -> object:
    """The list under ``number`` (every v1 example) or ``list`` (the v1 parameter table);
    the Axios example sends it JSON-encoded inside a string."""
    items = payload.get("number", payload.get("list"))
    if isinstance(items, str):
        try:
            return json.loads(items)
        except ValueError:
            raise _Refused("ERROR_PARAMS") from None
    return items


def _phone_number(value: object) -> str:
    if not isinstance(value, str) or not _NUMBER.fullmatch(value):
        raise _Refused("NUMBER_FORMAT_ERROR")
    return value


def _timestamp(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise _Refused("ERROR_DATE")


def _positive_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value) and int(value) > 0:
        return int(value)
    raise _Refused("ERROR_PARAMS")


def _required_text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise _Refused("ERROR_PARAMS")
    return value


def _amount(value: str | None) -> float:
    try:
        amount = float(value) if value is not None else math.nan
    except ValueError:
        raise _Refused("ERROR_PARAMS") from None
    if not math.isfinite(amount) or amount < 0:
        raise _Refused("ERROR_PARAMS")
    return amount


def _money(amount: float) -> str:
    return str(int(amount)) if amount.is_integer() else repr(amount)


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced, so that no record ever holds the API key."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text
