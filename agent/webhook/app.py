"""The webhook listener's raw ASGI app: OnlineSim's list call, ``/healthz`` and ``/metrics``.

No web framework: three routes do not need one, and a raw app decides byte for byte what
an internet client sees. The app never touches a modem: it serialises what a
:class:`SiteView` already holds, so an answer costs microseconds of our time.

Routes
    ``GET|POST {path}?token=T`` (or ``Authorization: Bearer T``)
        200 ``{"list": [...]}``, the sendNumbersOnline items of the numbers online now.
        A wrong or missing token answers 404 with an empty body, exactly as a path that
        does not exist, so that a scanner cannot tell the webhook is there. Both methods
        answer because OnlineSim does not document its method (the stand-in uses GET).
    ``GET /healthz``
        200 (agent ok) or 503 (anything else) with the view's health: states and counts,
        never a phone number or a secret. No token: fleet health checks hit it bare.
    ``GET /metrics``
        The Prometheus text format. No token: scrapers rarely carry one, and it holds
        only counts. A site that must hide even those keeps the port behind its firewall
        and opens it to OnlineSim's addresses only.
    Anything else: 404, empty body.

Bodies are never needed: one that declares more than ``max_body`` bytes is refused with
413 before a byte of it is read; a body sent without a length is read up to ``max_body``
and dropped; a body that does not arrive within ``body_timeout`` gets 408. Refusals that
leave bytes unread close the connection.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from agent.logs import get_logger
from agent.webhook.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agent.webhook.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024
BODY_TIMEOUT = 5.0
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
WEBHOOK_METHODS = frozenset({"GET", "POST"})
READ_METHODS = frozenset({"GET", "HEAD"})
JSON = b"application/json"
_CLOSE = (b"connection", b"close")
_NO_STORE = (b"cache-control", b"no-store")

log = get_logger("webhook")


class SiteView(Protocol):
    """What the webhook needs from the agent; both calls return what is already known.

    Both are called on the event loop for every request, so they must not block, and
    whatever they return is sent to the internet as it is.
    """

    def online_list(self) -> list[dict[str, Any]]:
        """The numbers online now, in the sendNumbersOnline item format."""
        ...

    def health(self) -> dict[str, Any]:
        """JSON-ready state without phone numbers or secrets, e.g. ``{"agent": "ok",
        "modems": {"ready": 3, ...}, "uplink": {"state": "ok", "code": None}}``;
        ``agent`` other than ``"ok"`` makes ``/healthz`` answer 503."""
        ...


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()


_NOT_FOUND = _Reply(404)
_TOO_LARGE = _Reply(413, headers=(_CLOSE,))
_TOO_SLOW = _Reply(408, headers=(_CLOSE,))
_BROKEN = _Reply(500, headers=(_CLOSE,))


class WebhookApp:
    """The ASGI app. ``path`` and ``token`` come from ``[webhook]``; an empty token
    refuses every webhook call (the configuration loader requires one anyway)."""

    def __init__(
        self,
        view: SiteView,
        metrics: Metrics,
        *,
        path: str,
        token: str,
        max_body: int = MAX_BODY,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self._view = view
        self._metrics = metrics
        self._path = path
        self._token = token.encode()
        self._max_body = max_body
        self._body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            reply = await self._reply(scope, receive)
        except Exception:
            # A fault of ours (the view, a bug) must cost one 500, never the listener,
            # and the log line must not carry the URL: its query holds the token.
            log.exception("webhook: %s %s failed", scope["method"], scope["path"][:100])
            reply = _BROKEN
        if reply is None:
            return
        headers = [
            (b"content-length", str(len(reply.body)).encode()),
            _NO_STORE,
            *reply.headers,
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _reply(self, scope: Scope, receive: Receive) -> _Reply | None:
        """The reply, or ``None`` when the client left before it could have one."""
        declared = _declared_length(scope)
        if declared is not None and declared > self._max_body:
            return _TOO_LARGE
        try:
            async with asyncio.timeout(self._body_timeout):
                fits = await self._drain_body(receive)
        except TimeoutError:
            return _TOO_SLOW
        if fits is None:
            return None
        if not fits:
            return _TOO_LARGE
        method, path = scope["method"], scope["path"]
        if path == self._path:
            return self._webhook(scope, method)
        if path == HEALTH_PATH:
            return self._health() if method in READ_METHODS else _not_allowed(READ_METHODS)
        if path == METRICS_PATH:
            if method not in READ_METHODS:
                return _not_allowed(READ_METHODS)
            return _Reply(
                200, self._metrics.render(), ((b"content-type", METRICS_CONTENT_TYPE.encode()),)
            )
        return _NOT_FOUND

    def _webhook(self, scope: Scope, method: str) -> _Reply:
        if not self._token_matches(scope):
            self._metrics.webhook_refused()
            return _NOT_FOUND
        if method not in WEBHOOK_METHODS:
            return _not_allowed(WEBHOOK_METHODS)
        body = json.dumps({"list": self._view.online_list()}, separators=(",", ":")).encode()
        self._metrics.webhook_answered()
        return _Reply(200, body, ((b"content-type", JSON),))

    def _health(self) -> _Reply:
        health = self._view.health()
        status = 200 if health.get("agent") == "ok" else 503
        return _Reply(status, json.dumps(health).encode(), ((b"content-type", JSON),))

    def _token_matches(self, scope: Scope) -> bool:
        """True when the query's first ``token`` or a Bearer header carries the token.

        Both candidates are compared, in constant time, whatever the first gave: the
        time an answer takes must not tell which of them was close.
        """
        if not self._token:
            return False
        matched = False
        for candidate in (_query_token(scope["query_string"]), _bearer_token(scope)):
            if candidate and hmac.compare_digest(candidate, self._token):
                matched = True
        return matched

    async def _drain_body(self, receive: Receive) -> bool | None:
        """Read and drop the body: True if it fit in ``max_body``, False if it did not
        (the rest is left unread), ``None`` if the client left."""
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            size += len(message.get("body", b""))
            if size > self._max_body:
                return False
            if not message.get("more_body", False):
                return True


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length as a number (h11 has already refused one that is not digits or
    that disagrees with a repeated one); ``None`` when the request declares none."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value)
    return None


def _query_token(query_string: bytes) -> bytes | None:
    """The raw bytes of the first ``token`` parameter, percent-decoded. Bytes, not text:
    a query that is not UTF-8 must simply fail to match, not fail to decode."""
    for pair in query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"token":
            return unquote_to_bytes(value.replace(b"+", b" "))
    return None


def _bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                return token.strip()
            return None
    return None


def _not_allowed(methods: frozenset[str]) -> _Reply:
    return _Reply(405, headers=((b"allow", ", ".join(sorted(methods)).encode()),))
