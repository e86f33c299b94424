"""The stand-in's two raw ASGI apps: the OnlineSim API (with its faults) and the control API.

No web framework: three API paths and a dozen control paths do not need one, and a raw
app lets the API side decide byte for byte what a client sees. Both apps talk to their
owner (:class:`~agent.emulate.onlinesim.server.OnlineSimStandIn`) through
:class:`StandInHost`, so that what is state (``state.py``), what is HTTP (here) and what is
sockets and tasks (``server.py``) stay apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

from agent.emulate.onlinesim.state import (
    ADD_MESSAGE,
    SEND_NUMBERS_ONLINE,
    TAKE_OFF_NUMBERS,
    Answer,
    Faults,
    RecordedRequest,
    StandInState,
    WebhookCall,
)
from agent.errors import EmulatorError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONTROL_PREFIX = "/_standin"
MAX_BODY = 1 << 20
# The method each API path answers to; any other method or path is REQUEST_NOT_FOUND.
API_METHODS = {SEND_NUMBERS_ONLINE: "POST", ADD_MESSAGE: "POST", TAKE_OFF_NUMBERS: "GET"}
# What a proxy in front of the real service answers when the service is sick.
GATEWAY_PAGES = {
    500: b"<html><head><title>500 Internal Server Error</title></head><body></body></html>",
    502: b"<html><head><title>502 Bad Gateway</title></head><body></body></html>",
    503: b"<html><head><title>503 Service Temporarily Unavailable</title></head></html>",
}
JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
HTML = b"text/html; charset=utf-8"


class StandInHost(Protocol):
    """What the apps need from the stand-in that owns them."""

    state: StandInState

    @property
    def faults(self) -> Faults: ...

    @property
    def seed(self) -> int: ...

    @property
    def webhook_info(self) -> dict[str, Any]: ...

    def key_matches(self, token: str) -> bool: ...

    def scrub(self, text: str) -> str: ...

    def chance(self, rate: float) -> bool: ...

    def pick(self, options: Sequence[int]) -> int: ...

    async def pause(self, seconds: float) -> bool: ...

    def reset_connection(self, client: tuple[str, int] | None) -> bool: ...

    def request_arrived(self, record: RecordedRequest) -> None: ...

    def request_done(self, record: RecordedRequest) -> None: ...

    async def set_faults(self, *, clear: bool = False, **changes: Any) -> Faults: ...

    def reseed(self, seed: int) -> None: ...

    async def call_webhook(self) -> WebhookCall | None: ...


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_reply(status: int, payload: object) -> Reply:
    return Reply(status, json.dumps(payload).encode())


class ApiApp:
    """The OnlineSim reseller API, with faults; ``/_standin/...`` goes to the control app."""

    def __init__(self, host: StandInHost) -> None:
        self.host = host
        self.control = ControlApp(host, down_allowed=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if is_control_path(scope["path"]):
            await self.control(scope, receive, send)
            return
        received_at, received_monotonic = time.time(), time.monotonic()
        body = await read_body(receive)
        if body is None:
            return
        record = self._new_record(scope, body, received_at, received_monotonic)
        self.host.request_arrived(record)
        reply = await self._decide(scope, body, record)
        if reply is None:
            self.host.request_done(record)
            await until_disconnected(receive)
            return
        await send_reply(send, reply)
        record.status = reply.status
        record.answer = self.host.scrub(reply.body.decode("utf-8", "replace"))
        record.answered_at, record.answered_monotonic = time.time(), time.monotonic()
        self.host.request_done(record)

    async def _decide(self, scope: Scope, body: bytes, record: RecordedRequest) -> Reply | None:
        """The reply, or ``None`` when the connection was cut instead of answered."""
        host = self.host
        latency = host.faults.latency
        if latency > 0:
            record.latency_added = latency
            if not await host.pause(latency):
                record.fault = "down"
                return None
        faults = host.faults
        if host.chance(faults.reset_rate):
            record.fault = "reset"
            host.reset_connection(scope.get("client"))
            return None
        if host.chance(faults.status_429_rate):
            record.fault = "429"
            retry_after = str(faults.retry_after).encode()
            return Reply(429, b"Too Many Requests", TEXT, ((b"retry-after", retry_after),))
        if host.chance(faults.error_rate):
            status = host.pick(sorted(GATEWAY_PAGES))
            record.fault = "error_rate"
            return Reply(status, GATEWAY_PAGES[status], HTML)
        answer = self._answer(scope, body, faults, record)
        if answer.code is None:
            return json_reply(answer.status, answer.body)
        if faults.error_body == "text":
            return Reply(answer.status, answer.code.encode(), TEXT)
        return json_reply(answer.status, {"response": answer.code})

    def _answer(self, scope: Scope, body: bytes, faults: Faults, record: RecordedRequest) -> Answer:
        path = scope["path"]
        if API_METHODS.get(path) != scope["method"]:
            return Answer.refusal("REQUEST_NOT_FOUND")
        key_problem = self._key_problem(scope)
        if key_problem:
            return Answer.refusal(key_problem)
        if faults.force:
            record.fault = "force"
            return Answer.refusal(faults.force)
        state = self.host.state
        if path == SEND_NUMBERS_ONLINE:
            return state.send_numbers_online(body, query_of(scope), now=time.time())
        if path == ADD_MESSAGE:
            return state.add_message(body, now=time.time(), now_monotonic=time.monotonic())
        return state.take_off_numbers(query_of(scope))

    def _key_problem(self, scope: Scope) -> str | None:
        """Only ``Authorization: Bearer KEY`` counts: every v1 example sends the key that
        way, and a key in the query string would end up in access logs."""
        value = header(scope, b"authorization")
        scheme, _, token = (value or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "ERROR_NO_KEY"
        return None if self.host.key_matches(token) else "ERROR_WRONG_KEY"

    def _new_record(
        self, scope: Scope, body: bytes, received_at: float, received_monotonic: float
    ) -> RecordedRequest:
        scrub = self.host.scrub
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        ]
        client = scope.get("client")
        return self.host.state.new_request(
            method=scope["method"],
            path=scrub(scope["path"]),
            query={name: scrub(value) for name, value in query_of(scope).items()},
            headers=[
                (name, "<redacted>" if name.lower() == "authorization" else scrub(value))
                for name, value in headers
            ],
            body=scrub(body.decode("utf-8", "replace")),
            client=f"{client[0]}:{client[1]}" if client else "",
            received_at=received_at,
            received_monotonic=received_monotonic,
        )


class ControlApp:
    """Inspection and fault control, under ``/_standin``; never logged, never faulted.

    ``down_allowed`` is false on the API listener: taking it down from a request on that
    listener would cut the very connection that asked, so ``down`` is only settable on the
    control listener.
    """

    def __init__(self, host: StandInHost, *, down_allowed: bool) -> None:
        self.host = host
        self.down_allowed = down_allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            return
        method, path = scope["method"], scope["path"]
        try:
            if not is_control_path(path):
                reply = json_reply(404, {"error": f"control routes live under {CONTROL_PREFIX}/"})
            else:
                reply = await self._handle(method, path, query_of(scope), body)
        except EmulatorError as exc:
            reply = json_reply(400, {"error": str(exc)})
        await send_reply(send, reply)

    async def _handle(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> Reply:
        host, state = self.host, self.host.state
        route = (method, path.removeprefix(CONTROL_PREFIX).rstrip("/"))
        if route == ("GET", "/requests"):
            since = _since(query)
            return json_reply(
                200, {"requests": [r.as_dict() for r in state.requests if r.seq > since]}
            )
        if route == ("GET", "/messages"):
            since = _since(query)
            return json_reply(
                200, {"messages": [m.as_dict() for m in state.messages if m.seq > since]}
            )
        if route == ("GET", "/online"):
            return json_reply(200, state.online_view())
        if route == ("GET", "/faults"):
            return json_reply(200, {"faults": host.faults.as_dict(), "seed": host.seed})
        if route == ("POST", "/faults"):
            changes = _json_body(body, "faults")
            clear = changes.pop("clear", False) is True
            if "seed" in changes:
                seed = changes.pop("seed")
                if not isinstance(seed, int) or isinstance(seed, bool):
                    raise EmulatorError(f"must be an integer, got {seed!r}", "seed", seed)
                host.reseed(seed)
            if changes.get("down") and not self.down_allowed:
                raise EmulatorError(
                    "set it through the control listener: it would cut this connection",
                    "down",
                    True,
                )
            faults = await host.set_faults(clear=clear, **changes)
            return json_reply(200, {"faults": faults.as_dict(), "seed": host.seed})
        if route == ("GET", "/earnings"):
            return json_reply(200, {"earnings": state.earnings})
        if route == ("POST", "/earnings"):
            state.set_earnings(_json_body(body, "earnings"))
            return json_reply(200, {"earnings": state.earnings})
        if route == ("POST", "/reset"):
            state.reset()
            return json_reply(200, {"reset": True})
        if route == ("GET", "/webhook"):
            calls = [call.as_dict() for call in state.webhook_calls]
            return json_reply(200, {**host.webhook_info, "calls": calls})
        if route == ("POST", "/webhook/call"):
            call = await host.call_webhook()
            if call is None:
                return json_reply(409, {"error": "no webhook URL configured (--webhook)"})
            return json_reply(200, call.as_dict())
        return json_reply(404, {"error": f"no control route {method} {path}"})


def is_control_path(path: str) -> bool:
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def query_of(scope: Scope) -> dict[str, str]:
    """The query string as a dict; a repeated name keeps its last value."""
    return dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body (cut at ``MAX_BODY``), or ``None`` if the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if size < MAX_BODY:
            chunks.append(chunk[: MAX_BODY - size])
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def until_disconnected(receive: Receive) -> None:
    """Wait for the server to notice the connection is gone, so that it does not send the
    500 it sends for an app that returns without answering a live connection."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def _json_body(body: bytes, setting: str) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError as exc:
        raise EmulatorError(f"body is not JSON: {exc}", setting, body) from exc
    if not isinstance(payload, dict):
        raise EmulatorError("body must be a JSON object", setting, payload)
    return payload


def _since(query: Mapping[str, str]) -> int:
    raw = query.get("since", "0")
    if not raw.isdigit():
        raise EmulatorError(f"must be a sequence number, got {raw!r}", "since", raw)
    return int(raw)
