"""The stand-in's side of the webhook: it fetches the agent's online list, as OnlineSim does.

The v1 document only says that OnlineSim's server calls the reseller's URL and expects
``{"list": [...]}`` in the sendNumbersOnline item format. The caller uses GET, sends
nothing else (a secret, if any, is part of the configured URL) and records every call in
the state with the list it parsed or the reason it could not: a network error, a status
other than 200, a body that is not a JSON object with ``list``, or the API code that list
would be refused with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

import httpx

from agent.emulate.onlinesim.state import StandInState, WebhookCall, number_list_problem
from agent.errors import EmulatorError

BODY_KEPT = 64 * 1024


class WebhookCaller:
    """Calls ``url`` every ``interval`` seconds once started, and on demand."""

    def __init__(
        self,
        url: str,
        interval: float,
        state: StandInState,
        *,
        timeout: float = 5.0,
        on_call: Callable[[], None] = lambda: None,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise EmulatorError(f"not a URL: {exc}", "webhook", url) from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise EmulatorError("must be an http:// or https:// URL", "webhook", url)
        if not interval > 0:
            raise EmulatorError(f"must be positive seconds, got {interval!r}", "webhook_interval")
        self.url = url
        self.interval = interval
        self._state = state
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._on_call = on_call

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self._timeout, headers={"user-agent": "onlinesim-stand-in"}
        )
        self._task = asyncio.create_task(self._every_interval(), name="onlinesim-webhook")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def call_now(self) -> WebhookCall:
        """Call the webhook once and record what came back; never raises for the peer's
        faults (they are what the record is for)."""
        if self._client is None:
            raise EmulatorError("the webhook caller is not started", "webhook", self.url)
        async with self._lock:
            call = await self._call(self._client)
        self._on_call()
        return call

    async def _call(self, client: httpx.AsyncClient) -> WebhookCall:
        at, started = time.time(), time.monotonic()
        try:
            response = await client.get(self.url)
        except httpx.HTTPError as exc:
            return self._state.add_webhook_call(
                at=at,
                duration=time.monotonic() - started,
                status=None,
                body="",
                numbers=None,
                error=f"{type(exc).__name__}: {exc}",
            )
        numbers, error = _numbers_of(response)
        return self._state.add_webhook_call(
            at=at,
            duration=time.monotonic() - started,
            status=response.status_code,
            body=response.text[:BODY_KEPT],
            numbers=numbers,
            error=error,
        )

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.call_now()


def _numbers_of(response: httpx.Response) -> tuple[list[dict[str, object]] | None, str | None]:
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    try:
        payload = json.loads(response.content)
    except ValueError:
        return None, "body is not JSON"
    if not isinstance(payload, dict) or "list" not in payload:
        return None, 'body is not an object with "list"'
    problem = number_list_problem(payload["list"])
    if problem is not None:
        return None, problem
    return payload["list"], None
