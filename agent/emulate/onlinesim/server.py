"""Sockets and tasks of the stand-in: two HTTP listeners (agent.httpserver) in the caller's
event loop.

The API listener carries the OnlineSim API (and the control routes, for convenience); it
can be taken *down* for real (listening socket closed, open connections reset) and brought
back on the same port. The control listener stays up meanwhile, so that whoever took the
API down can bring it back.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from agent.emulate.onlinesim.app import ApiApp, ControlApp
from agent.emulate.onlinesim.state import Faults, RecordedRequest, StandInState, WebhookCall, scrub
from agent.emulate.onlinesim.webhook_caller import WebhookCaller
from agent.errors import EmulatorError
from agent.httpserver import HttpServer, Limits, listen_socket

#: Only tests and the demo talk to the stand-in, and its faults hold answers for as long as
#: asked: no deadline, no cap per source (every client is 127.0.0.1). The connection cap
#: is the bound of what a runaway test can open.
STAND_IN_LIMITS = Limits(
    header_timeout=None, busy_connections=None, max_connections=1024, max_per_source=None
)


class OnlineSimStandIn:
    """A local OnlineSim reseller API with fault injection and a control API.

    ``key`` is the only API key accepted. ``takeoff`` is the initial earnings table
    (number -> roubles) for takeOffNumbers. ``error_body`` is the initial error body form.
    ``seed`` seeds the fault dice. ``record_path`` gets every API request as a JSON line.
    """

    def __init__(
        self,
        *,
        key: str,
        webhook_url: str | None = None,
        webhook_interval: float = 60.0,
        error_body: str = "json",
        takeoff: Mapping[str, float] | None = None,
        seed: int = 0,
        record_path: Path | None = None,
    ) -> None:
        if not key or key != key.strip():
            raise EmulatorError("must be a non-empty key without surrounding blanks", "key")
        self._key = key
        self._default_faults = Faults(error_body=error_body)
        self._faults = self._default_faults
        self.state = StandInState(earnings=dict(takeoff or {}))
        self._seed = seed
        self._rng = random.Random(seed)
        self._record_path = record_path
        self._record_file: IO[str] | None = None
        self._webhook = (
            WebhookCaller(webhook_url, webhook_interval, self.state, on_call=self._notify_change)
            if webhook_url
            else None
        )
        self._cut = asyncio.Event()
        self._changed = asyncio.Event()
        self._transition = asyncio.Lock()
        self._api: _Listener | None = None
        self._control: _Listener | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, control_port: int = 0) -> str:
        """Listen (port 0 picks a free one) and return the API base URL."""
        if self._api is not None:
            raise EmulatorError("already started", "start")
        if self._record_path is not None:
            self._record_file = self._record_path.open("a", encoding="utf-8")
        self._cut.clear()
        self._api = _Listener(ApiApp(self), host, port)
        self._control = _Listener(ControlApp(self, down_allowed=True), host, control_port)
        try:
            await self._api.open()
            await self._control.open()
        except EmulatorError:
            await self.stop()
            raise
        if self._webhook is not None:
            await self._webhook.start()
        return self.url

    async def stop(self) -> None:
        """Stop both listeners and the webhook caller; requests in flight are cut."""
        self._cut.set()
        if self._webhook is not None:
            await self._webhook.stop()
        async with self._transition:
            await asyncio.gather(
                *(
                    listener.close()
                    for listener in (self._api, self._control)
                    if listener is not None and listener.is_open
                )
            )
        self._api = self._control = None
        self._faults = self._faults.changed({"down": False})  # nothing listens to be down
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None

    @property
    def url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:41234``; it stays the same while down."""
        return self._started(self._api).url

    @property
    def control_url(self) -> str:
        """The control listener's base URL; its routes are under ``/_standin``."""
        return self._started(self._control).url

    # -- faults ----------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    @property
    def seed(self) -> int:
        return self._seed

    async def set_faults(self, *, clear: bool = False, **changes: Any) -> Faults:
        """Change fault settings (``clear`` first returns to the defaults); returns once a
        change of ``down`` has taken effect: the port refuses connections, or accepts again."""
        base = self._default_faults if clear else self._faults
        faults = base.changed(changes)
        async with self._transition:
            if faults.down != self._faults.down:
                api = self._started(self._api)
                if faults.down:
                    self._cut.set()
                    await api.close()
                else:
                    self._cut.clear()
                    await api.open()
            self._faults = faults
        return faults

    def reseed(self, seed: int) -> None:
        self._seed = seed
        self._rng.seed(seed)

    def chance(self, rate: float) -> bool:
        """A draw of the fault dice; rates of 0 and 1 draw nothing, so that turning one
        fault on does not change the sequence another one sees."""
        if rate <= 0.0:
            return False
        return rate >= 1.0 or self._rng.random() < rate

    def pick(self, options: Sequence[int]) -> int:
        return self._rng.choice(options)

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; False if the API listener was cut (down or stop) meanwhile."""
        try:
            async with asyncio.timeout(seconds):
                await self._cut.wait()
        except TimeoutError:
            return True
        return False

    def reset_connection(self, client: tuple[str, int] | None) -> bool:
        return self._api is not None and self._api.reset_client(client)

    # -- what the apps need ----------------------------------------------------------------

    def key_matches(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._key.encode())

    def scrub(self, text: str) -> str:
        return scrub(text, (self._key,))

    def request_arrived(self, record: RecordedRequest) -> None:
        self._notify_change()

    def request_done(self, record: RecordedRequest) -> None:
        if self._record_file is not None:
            self._record_file.write(json.dumps(record.as_dict()) + "\n")
            self._record_file.flush()
        self._notify_change()

    async def wait_until(self, condition: Callable[[StandInState], bool]) -> None:
        """Wait until ``condition(state)`` holds, looking again after every request that
        arrives or is answered and every webhook call. Tests and benchmarks wait on this,
        inside ``asyncio.timeout``, instead of sleeping."""
        while not condition(self.state):
            await self._changed.wait()

    def _notify_change(self) -> None:
        # One Event per generation: waiters of this one wake, later waiters get a new one.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def webhook_info(self) -> dict[str, Any]:
        if self._webhook is None:
            return {"url": None, "interval": None}
        return {"url": self._webhook.url, "interval": self._webhook.interval}

    async def call_webhook(self) -> WebhookCall | None:
        """Call the agent's webhook now; ``None`` when no webhook URL was configured."""
        if self._webhook is None:
            return None
        return await self._webhook.call_now()

    @staticmethod
    def _started(listener: _Listener | None) -> _Listener:
        if listener is None:
            raise EmulatorError("the stand-in is not started", "start")
        return listener


class _Listener:
    """One HTTP server on a fixed address that can be closed and reopened on it."""

    def __init__(self, app: ApiApp | ControlApp, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: HttpServer | None = None

    @property
    def is_open(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def open(self) -> None:
        try:
            sock = listen_socket(self._host, self._port)
        except OSError as exc:
            raise EmulatorError(f"cannot listen on {self.url}: {exc}", "listen") from exc
        self._port = sock.getsockname()[1]
        server = HttpServer(self._app, STAND_IN_LIMITS)
        try:
            await server.start(sock)
        except OSError as exc:
            sock.close()
            raise EmulatorError(f"cannot listen on {self.url}: {exc}", "listen") from exc
        self._server = server

    async def close(self) -> None:
        """Stop listening, reset every open connection, wait for requests in progress."""
        server = self._server
        if server is None:
            raise EmulatorError(f"{self.url} is not listening", "listen")
        self._server = None
        await server.stop()

    def reset_client(self, client: tuple[str, int] | None) -> bool:
        """Reset the connection of ``client`` (the ASGI scope's client address)."""
        return self._server is not None and self._server.reset_client(client)
