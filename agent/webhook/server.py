"""The webhook listener: agent.httpserver in the agent's event loop, set up for the open
internet with the limits of ``Limits`` (agent/httpserver.py; docs/bounds.md says why each
is what it is).

- Header size: a request whose head grows past ``max_header_bytes`` gets 400 and close, so
  a 1 MB header line costs 16 KiB of buffer, not 1 MB.
- Malformed HTTP (h11's verdict) gets 400 and close; bytes that are not ASCII in the
  request line are malformed too.
- Busy: past ``busy_connections`` open connections, requests get 503.
- A hard cap, ``max_connections``: a connection beyond it is reset as soon as it is
  accepted, so that a flood cannot take the file descriptors the modems and the store
  need.
- A cap per source, ``max_per_source`` open connections from one IPv4 address or one
  IPv6 /64 (what one client can get hold of); one more is reset as soon as it is
  accepted, so one client, slowloris or not, can hold at most that many of the slots and
  OnlineSim's call from its own address always finds one free.
- What the server says about clients (malformed requests, 503 when busy, per-source
  refusals) goes through a LogLimiter keyed by source: a few lines, then a summary a
  minute, so that a client cannot flood the journal.
- A deadline per connection: from the moment a connection is open or has had its answer,
  the next request's head must arrive within ``header_timeout``, or the connection is
  reset (a client trickling a header one byte at a time, slowloris, included); a request
  that is being answered gets one more ``header_timeout`` and is then reset too (a client
  that never reads its answer). The app's own body timeout is shorter, so an honest slow
  client gets 408 first.
- Bodies are the app's business (413 for a declared length over the limit, see app.py).
"""

from __future__ import annotations

from agent.errors import ListenError
from agent.httpserver import HttpServer, Limits, listen_socket, source_of
from agent.logs import LogLimiter, get_logger
from agent.webhook.app import WebhookApp

log = get_logger("webhook")

__all__ = ["Limits", "WebhookServer", "source_of"]


class WebhookServer:
    """Serves a :class:`WebhookApp` on one address, in the running event loop."""

    def __init__(self, app: WebhookApp, limits: Limits | None = None) -> None:
        self._app = app
        self._limits = limits or Limits()
        self._server: HttpServer | None = None
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
        limiter = LogLimiter(log)

        def client_warning(kind: str, source: str, text: str) -> None:
            limiter.warning(kind, source, "webhook: from %s: %s", source, text)

        server = HttpServer(self._app, self._limits, on_client_warning=client_warning)
        try:
            await server.start(sock)
        except OSError as exc:
            sock.close()
            raise ListenError(f"cannot listen: {exc}", f"{host}:{port}") from exc
        self._server = server
        self._address = (host, sock.getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and cut open connections; does nothing when not started."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when started with port 0)."""
        if self._address is None:
            raise ListenError("not started", "webhook listener")
        return self._address[1]

    @property
    def connection_count(self) -> int:
        """Connections open now: what the limits bound."""
        return 0 if self._server is None else len(self._server.connections)
