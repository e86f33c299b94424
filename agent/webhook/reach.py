"""Is the webhook reachable from the internet? The agent asks its own public URL.

``[webhook] public_url`` is the address OnlineSim calls: the router's public address when
it forwards a port to the Pi, or ``https://RELAY/SITE`` when the site keeps a tunnel open to
a relay (docs/public-url.md). Every ``interval`` seconds the agent requests
``{public_url}/healthz`` there and counts the address up only when the answer is its own
``/healthz`` with its own ``instance`` id.

Why ask the URL rather than read the tunnel's systemd unit: the URL is the whole path
OnlineSim takes (DNS, the relay's certificate, Caddy, sshd's forward, the tunnel, the
listener), and a port forward has no unit at all. A unit says "active" while ssh waits out a
dead link or while the relay's proxy is down; a relay's 502 or another site's agent behind a
mistyped path is not us. And the agent runs unprivileged, without D-Bus access to systemd.

One failed check is a lost packet, not an outage: the state becomes DOWN after
``failures_before_down`` checks in a row fail, and UP at the first success.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx

from agent.logs import get_logger
from agent.status import PublicUrlState, PublicUrlStatus
from agent.webhook.app import HEALTH_PATH

log = get_logger("webhook.reach")

CHECK_INTERVAL = 30.0
CHECK_TIMEOUT = 10.0
FAILURES_BEFORE_DOWN = 2
# A /healthz answer is a few hundred bytes; more is somebody else's page.
MAX_ANSWER = 16 * 1024
MAX_PROBLEM = 200


class PublicUrlCheck:
    """Checks ``public_url`` and keeps its :class:`PublicUrlStatus`; ``on_change`` gets
    each new status whose state differs from the last one."""

    def __init__(
        self,
        public_url: str,
        webhook_url: str,
        instance: str,
        *,
        interval: float = CHECK_INTERVAL,
        timeout: float = CHECK_TIMEOUT,
        failures_before_down: int = FAILURES_BEFORE_DOWN,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[PublicUrlStatus], None] | None = None,
        verify: bool | str = True,
    ) -> None:
        self._health_url = public_url.rstrip("/") + HEALTH_PATH
        self._instance = instance
        self._interval = interval
        self._timeout = timeout
        self._failures_before_down = failures_before_down
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self.status = PublicUrlStatus(url=webhook_url)
        # trust_env: SSL_CERT_FILE names an extra CA (a relay on Caddy's internal CA), and
        # an HTTPS proxy the site must use applies here as it does to the uplink.
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, verify=verify, trust_env=True
        )

    async def run(self) -> None:
        try:
            while True:
                await self.check_once()
                await asyncio.sleep(self._interval)
        finally:
            await self._client.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check_once(self) -> PublicUrlStatus:
        """One request to ``{public_url}/healthz``; returns the status it leaves."""
        try:
            # httpx's timeout bounds each read, not the answer: one trickled in a byte at a
            # time would hold the check (and the state) for hours.
            async with asyncio.timeout(self._timeout):
                problem = await self._problem()
        except TimeoutError:
            problem = f"Timeout: no whole answer within {self._timeout:g} s"
        now = self._clock()
        if problem is None:
            self._failures = 0
            state = PublicUrlState.UP
        else:
            self._failures += 1
            if self._failures >= self._failures_before_down:
                state = PublicUrlState.DOWN
            else:
                state = self.status.state  # one miss changes nothing yet
        changed = state is not self.status.state
        self.status = PublicUrlStatus(
            url=self.status.url,
            state=state,
            since=now if changed else self.status.since,
            checked_at=now,
            problem=problem,
        )
        if changed:
            if state is PublicUrlState.UP:
                log.info("public URL %s reachable", self._health_url)
            else:
                log.warning("public URL %s unreachable: %s", self._health_url, problem)
            if self._on_change is not None:
                self._on_change(self.status)
        return self.status

    async def _problem(self) -> str | None:
        """None when the answer is this agent's /healthz; else what was wrong, in words."""
        try:
            async with self._client.stream("GET", self._health_url) as response:
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        return f"HTTP {response.status_code}: an answer over {MAX_ANSWER} bytes"
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            # InvalidURL and the IDNA codec's UnicodeError: a host name the configuration
            # let through that httpx refuses to ask; a problem to show, like a failure.
            return _clip(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if response.status_code not in (200, 503):  # 503: we answered, and are unwell
            return _clip(f"HTTP {response.status_code}: {body[:80]!r}")
        try:
            answer = json.loads(body)
        except ValueError:
            return _clip(f"HTTP {response.status_code}: not JSON: {body[:80]!r}")
        if not isinstance(answer, dict) or answer.get("instance") != self._instance:
            return "another server answers there (not this agent's /healthz)"
        return None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM else text[: MAX_PROBLEM - 1] + "…"
