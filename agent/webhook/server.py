"""The webhook listener: uvicorn in the agent's event loop, set up for the open internet.

What uvicorn gives, and what is added here (``Limits`` holds every number; docs/bounds.md
says why each is what it is):

- Header size: h11 refuses a request whose head grows past ``max_header_bytes`` (400 and
  close), so a 1 MB header line costs 16 KiB of buffer, not 1 MB.
- Malformed HTTP: h11 errors become 400 and close; bytes that are not ASCII in the
  request line are a protocol error there too.
- Busy: past ``busy_connections`` open connections, requests get 503 (uvicorn's
  ``limit_concurrency``).
- Added: a hard cap, ``max_connections``: a connection beyond it is reset as soon as it
  is accepted, so that a flood cannot take the file descriptors the modems and the store
  need.
- Added: a cap per source, ``max_per_source`` open connections from one IPv4 address or
  one IPv6 /64 (what one client can get hold of); one more is reset as soon as it is
  accepted, so one client, slowloris or not, can hold at most that many of the slots and
  OnlineSim's call from its own address always finds one free.
- Added: the warnings uvicorn logs for what a client sends (malformed requests, refused
  upgrades, 503 when busy) go through a LogLimiter keyed by source: a few lines, then a
  summary a minute, so that a client cannot flood the journal.
- Added: a deadline per connection. uvicorn has a keep-alive timeout, but any byte
  cancels it, so a client trickling a header one byte at a time (slowloris) would hold
  its connection for ever. Here, from the moment a connection is open or has had its
  answer, the next request's head must arrive within ``header_timeout``, or the
  connection is reset; a request that is being answered gets one more ``header_timeout``
  and is then reset too (a client that never reads its answer). The app's own body
  timeout is shorter, so an honest slow client gets 408 first.
- Bodies are the app's business (413 for a declared length over the limit, see app.py).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from agent.errors import ListenError
from agent.httpserver import (
    EMBEDDED,
    QuietServer,
    listen_socket,
    reset_transport,
    start_serving,
)
from agent.logs import LogLimiter, get_logger
from agent.webhook.app import WebhookApp

log = get_logger("webhook")

# uvicorn's warnings about what a client sent, by the summary's name for them.
_CLIENT_WARNINGS = {
    "Invalid HTTP request received.": "malformed requests",
    "Exceeded concurrency limit.": "requests answered 503 (busy)",
}


@dataclass(frozen=True)
class Limits:
    """How much one client, and all of them together, may take of the listener."""

    header_timeout: float = 10.0
    keep_alive: int = 5  # seconds an idle keep-alive connection stays open (whole seconds)
    max_header_bytes: int = 16 * 1024
    busy_connections: int = 200
    max_connections: int = 256
    # OnlineSim calls one at a time; 8 leaves room for its retries and for a health check
    # and a scraper sharing its address (or a reverse proxy in front, where every
    # connection comes from the proxy). A constant, not a setting: no honest client
    # needs more, and 8 from each of 32 sources are needed to fill max_connections.
    max_per_source: int = 8


class _GuardedConfig(uvicorn.Config):
    """uvicorn's configuration plus the limits uvicorn has no setting for."""

    def __init__(self, app: WebhookApp, limits: Limits, **options: Any) -> None:
        super().__init__(app, **options)
        self.limits = limits
        # Open connections by source: only sources with one open, so at most
        # max_connections keys.
        self.per_source: collections.Counter[str] = collections.Counter()
        self.log_limiter = LogLimiter(log)


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 connection with a connection cap and a per-connection deadline."""

    def __init__(
        self,
        config: _GuardedConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = config.limits
        self._per_source = config.per_source
        self._log_limiter = config.log_limiter
        self._source: str | None = None  # counted in per_source while open
        self._deadline: asyncio.TimerHandle | None = None
        self._cycle_at_deadline: RequestResponseCycle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        source = source_of(self.client[0] if self.client else "")
        # uvicorn logs through this attribute; its warnings are the client's doing.
        self.logger = _SourceLogger(self.logger, self._log_limiter, source)
        if self._per_source[source] >= self._limits.max_per_source:
            self._log_limiter.warning(
                "connections refused (per-source cap)",
                source,
                "webhook: %s has %d connections open already: refused",
                source,
                self._limits.max_per_source,
            )
            self._refuse(transport)
            return
        if len(self.connections) > self._limits.max_connections:
            self._refuse(transport)
            return
        self._source = source
        self._per_source[source] += 1
        self._arm_deadline()

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Reset at once, and stop counting this connection as open now: asyncio accepts
        connections in batches, and a batch being refused must not, until its resets are
        done, count against the caps (or take the 503 threshold) of those let in."""
        self.connections.discard(self)
        reset_transport(transport)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        if self._source is not None:
            self._per_source[self._source] -= 1
            if not self._per_source[self._source]:
                del self._per_source[self._source]
            self._source = None
        super().connection_lost(exc)

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._cycle_at_deadline = None
        self._deadline = self.loop.call_later(self._limits.header_timeout, self._deadline_passed)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        if answering and cycle is not self._cycle_at_deadline:
            # The head came in time and the app is answering: one more period for it.
            self._cycle_at_deadline = cycle
            self._deadline = self.loop.call_later(
                self._limits.header_timeout, self._deadline_passed
            )
            return
        reset_transport(self.transport)


class _SourceLogger:
    """uvicorn's logger for one connection: warnings about what the client sent go
    through the limiter, keyed by its source, as simedge lines; the rest pass through."""

    def __init__(self, logger: logging.Logger, limiter: LogLimiter, source: str) -> None:
        self._logger = logger
        self._limiter = limiter
        self._source = source

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        text = message % args if args else message
        kind = _CLIENT_WARNINGS.get(message, "unusual requests")
        self._limiter.warning(kind, self._source, "webhook: from %s: %s", self._source, text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


def source_of(host: str) -> str:
    """What counts as one client: an IPv4 address, or the /64 of an IPv6 one (a single
    host is usually given a whole /64). Anything else (a unix socket) is itself."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class WebhookServer:
    """Serves a :class:`WebhookApp` on one address, in the running event loop."""

    def __init__(self, app: WebhookApp, limits: Limits | None = None) -> None:
        self._app = app
        self._limits = limits or Limits()
        self._server: QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0 picks a free one; see ``port``).

        Raises ``ListenError`` naming the address when it cannot be had.
        """
        if self._server is not None:
            raise ListenError("the webhook listener is already started", f"{host}:{port}")
        try:
            sock = listen_socket(host, port)
        except OSError as exc:
            raise ListenError(f"cannot listen: {exc}", f"{host}:{port}") from exc
        limits = self._limits
        config = _GuardedConfig(
            self._app,
            limits,
            http=_GuardedH11Protocol,
            h11_max_incomplete_event_size=limits.max_header_bytes,
            limit_concurrency=limits.busy_connections,
            timeout_keep_alive=limits.keep_alive,
            server_header=False,
            **EMBEDDED,
        )
        server = QuietServer(config)
        try:
            self._task = await start_serving(server, sock, name=f"webhook-{host}:{port}")
        except OSError as exc:
            raise ListenError(str(exc), f"{host}:{port}") from exc
        self._server = server
        self._address = (host, sock.getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and cut open connections; does nothing when not started."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.request_exit()
        await task

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when started with port 0)."""
        if self._address is None:
            raise ListenError("not started", "webhook listener")
        return self._address[1]

    @property
    def connection_count(self) -> int:
        """Connections open now: what the limits bound."""
        return 0 if self._server is None else len(self._server.server_state.connections)
