"""The outbox pump: every complete, unblocked SMS to addMessage, in order per SIM.

Wake-ups, not polling: the pump sleeps on one event that the store sets after every
commit that makes a message due (``Store.on_message_ready``: an ingest, a sent message
whose SIM has a next one, a retry by hand) and that the uplink state sets when a pause
ends. Otherwise it sleeps until the earliest persisted retry time.

Order and parallelism: ``Store.due_messages`` hands out at most the first pending message
of each SIM, so a SIM's messages go one at a time in receipt order while different SIMs
go in parallel, up to ``max_in_flight`` requests.

Each answer, as API-NOTES.md says:

- success: ``mark_sent``; metrics count it and observe receipt-to-acceptance latency;
- network errors, timeouts, 5xx, 429 (``UplinkTransient``): ``schedule_retry`` with the
  attempt count and next attempt time from the transient policy, persisted, so that a
  restart resumes the schedule; the SIM's later messages wait behind it;
- 401/403/405 (``UplinkAccountError``): the whole uplink pauses with an alarm event;
  nothing is written off; one probe (the next due message) goes up every
  ``account_probe`` interval until one succeeds (or another part of the uplink succeeds);
- NO_NUMBER: the numbers list is sent again (``NumbersSync.resync``), then the message
  is tried once more; if it still fails it backs off like a transient error;
- NUMBER_FORMAT_ERROR, ERROR_PARAMS, ERROR_DATE and any other refusal
  (``UplinkRejected``): a dead letter with the reason, the status and the raw answer,
  re-sendable by hand (``Store.retry`` / ``retry_all_dead``).

What is sent: ``date`` is the SMS's service-centre timestamp in unix seconds (the Pi's
clock may be wrong, the network's is not), ``from`` the sender, ``message`` the exact
text, and ``number`` the SIM's own number in E.164. The pump addresses by number, not by
the id sendNumbersOnline returned: the number is what the agent knows first-hand and
keeps across restarts, while an id changes whenever a number leaves and rejoins the list,
and the stand-in (like OnlineSim) refuses an id and number that disagree. A number that
phonenumbers cannot make E.164 is sent as stored, for OnlineSim to judge: its
NUMBER_FORMAT_ERROR then makes a dead letter that names the problem.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from peewee import fn

from agent.errors import (
    UplinkAccountError,
    UplinkError,
    UplinkNoNumber,
    UplinkRejected,
    UplinkTransient,
)
from agent.logs import get_logger
from agent.store import OutboxMessage, Store
from agent.store.models import PENDING, Message, Sim, literal
from agent.uplink.client import OnlineSimClient
from agent.uplink.numbers import NumbersSync, e164_or_raw
from agent.uplink.policy import (
    RetryPolicy,
    account_probe,
    next_attempt_at,
    next_delay,
    transient_backoff,
)
from agent.uplink.state import UplinkState

if TYPE_CHECKING:
    from agent.webhook.metrics import Metrics

log = get_logger("uplink.pump")

#: How often at most the outbox depth gauge is refreshed (it counts rows).
_DEPTH_INTERVAL = 1.0
SIM_BATCH = 32  # a SIM's messages read at once while its queue drains


class OutboxPump:
    """Drains the outbox to addMessage until cancelled. Run :meth:`run` as a task.

    ``policy`` is the transient back-off, ``probe`` the pace of probes while paused (both
    from :mod:`agent.uplink.policy`; tests inject tiny ones). ``numbers`` answers
    NO_NUMBER with a new list; ``resync_timeout`` bounds the wait for it. ``on_outcome``
    is called with (message id, "sent" | "retry" | "dead" | "paused") once each outcome is
    recorded: for a live view of the outbox, and for tests to wait on.
    """

    def __init__(
        self,
        client: OnlineSimClient,
        store: Store,
        *,
        policy: RetryPolicy | None = None,
        probe: RetryPolicy | None = None,
        numbers: NumbersSync | None = None,
        state: UplinkState | None = None,
        metrics: Metrics | None = None,
        max_in_flight: int = 8,
        batch: int = 256,
        resync_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[int, str], None] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight {max_in_flight} < 1")
        self._client = client
        self._store = store
        self._policy = policy or transient_backoff()
        self._probe = probe or account_probe()
        self._numbers = numbers
        self._state = state or UplinkState(clock)
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._batch = max(batch, max_in_flight)
        self._resync_timeout = resync_timeout
        self._clock = clock
        self._on_outcome = on_outcome
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # ICCID -> its one request
        self._retry_times: list[float] = []  # heap of persisted next attempt times
        self._probe_at = 0.0  # loop time of the next probe while paused
        self._probe_failures = 0
        self._imsi: dict[str, str | None] = {}
        self._depth_at = -float("inf")
        self.forwarded = 0  # messages accepted since start (benchmarks, tests)

    @property
    def state(self) -> UplinkState:
        return self._state

    async def run(self) -> None:
        """Deliver until cancelled; in-flight requests are cancelled with it (their
        messages stay pending and go again after a restart)."""
        remove_ready = self._store.on_message_ready(self._wake.set)
        remove_state = self._state.on_change(lambda _snapshot: self._wake.set())
        loop = asyncio.get_running_loop()
        try:
            await self._load_retry_times()
            while True:
                self._wake.clear()
                if self._state.paused:
                    # One probe at a time, every probe interval, until a call succeeds.
                    wait = self._probe_at - loop.time()
                    if wait > 0 or self._in_flight:
                        await self._sleep(wait if wait > 0 else None)
                        continue
                    self._probe_at = loop.time() + self._probe_delay()
                    await self._dispatch(1)
                else:
                    await self._dispatch(self._max_in_flight - len(self._in_flight))
                await self._refresh_depth(loop.time())
                await self._sleep(self._next_retry_in())
        finally:
            remove_ready()
            remove_state()
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    # --- dispatch ---------------------------------------------------------------------------

    async def _dispatch(self, room: int) -> None:
        if room <= 0:
            return
        scanned_at = self._clock()
        due = await self._store.due_messages(scanned_at, self._batch)
        # Retry times up to the scan are covered by it: a message due then is in ``due``.
        while self._retry_times and self._retry_times[0] <= scanned_at:
            heapq.heappop(self._retry_times)
            if not self._retry_times:
                # Only the earliest time after a restart is known in memory: read the next.
                await self._load_retry_times(after=scanned_at)
        for message in due:
            if room <= 0:
                break
            if message.iccid in self._in_flight or message.number is None:
                # Its SIM has a request out, or its number is not known yet (setting the
                # number wakes the pump).
                continue
            task = asyncio.create_task(self._serve_sim(message), name=f"outbox {message.iccid}")
            self._in_flight[message.iccid] = task
            task.add_done_callback(lambda _task, iccid=message.iccid: self._done(iccid))
            room -= 1

    def _done(self, iccid: str) -> None:
        task = self._in_flight.pop(iccid)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())
        self._wake.set()

    async def _sleep(self, seconds: float | None) -> None:
        """Until a wake-up, or ``seconds`` (None: only a wake-up)."""
        if seconds is not None and seconds <= 0:
            await asyncio.sleep(0)  # let the requests in flight run before scanning again
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _next_retry_in(self) -> float | None:
        """Seconds to the earliest retry not yet covered by a scan (<= 0: scan now);
        None while every request slot is taken (a finishing request wakes the pump)."""
        if not self._retry_times or len(self._in_flight) >= self._max_in_flight:
            return None
        return self._retry_times[0] - self._clock()

    # --- one message ------------------------------------------------------------------------

    async def _serve_sim(self, first: OutboxMessage) -> None:
        """One SIM's queue, in order, by one task: ``first``, then whatever is due after it,
        read a batch at a time by the SIM's own index. It stops at the first message that
        is not accepted (its retry time holds the rest back) or when the uplink pauses; the
        next scan of the outbox picks the SIM up again."""
        queue = [first]
        while queue:
            for message in queue:
                if message.number is None or not await self._deliver(message):
                    return
                if self._state.paused:
                    return
            queue = await self._store.sim_queue(first.iccid, self._clock(), SIM_BATCH)

    async def _deliver(self, message: OutboxMessage) -> bool:
        """One addMessage and its recorded outcome; True when OnlineSim accepted it."""
        assert message.number is not None  # _dispatch skips the others
        number = e164_or_raw(message.number, self._imsi_of(message.iccid))
        try:
            await self._add(message, number)
        except UplinkNoNumber as error:
            if self._numbers is None or not await self._resynced():
                await self._retry_later(message, error)
                return False
            try:
                await self._add(message, number)
            except UplinkError as again:
                await self._failed(message, again)
                return False
        except UplinkError as error:
            await self._failed(message, error)
            return False
        await self._sent(message)
        return True

    async def _add(self, message: OutboxMessage, number: str) -> None:
        await self._client.add_message(
            number=number,
            sender=message.sender,
            text=message.text,
            date=int(message.scts.timestamp()),
        )

    async def _resynced(self) -> bool:
        assert self._numbers is not None
        try:
            async with asyncio.timeout(self._resync_timeout):
                await self._numbers.resync()
        except TimeoutError:
            log.warning(
                "NO_NUMBER: the numbers list did not go up within %.0f s", self._resync_timeout
            )
            return False
        return True

    async def _sent(self, message: OutboxMessage) -> None:
        now = self._clock()
        await self._store.mark_sent(message.id, now, 200, None)
        self._probe_failures = 0
        self._state.succeeded()
        self.forwarded += 1
        if self._metrics is not None:
            self._metrics.sms_forwarded()
            self._metrics.observe_delivery(max(0.0, now - message.received_at.timestamp()))
        self._outcome(message, "sent")

    async def _failed(self, message: OutboxMessage, error: UplinkError) -> None:
        if self._metrics is not None:
            self._metrics.uplink_error(error.code or type(error).__name__)
        if isinstance(error, UplinkAccountError):
            await self._pause(error)
            self._outcome(message, "paused")
        elif isinstance(error, UplinkRejected):
            reason = f"{error.code}: {error}"
            await self._store.dead_letter(message.id, reason, error.status, error.body)
            if self._metrics is not None:
                self._metrics.sms_dead()
            log.error("message #%d dead: %s (answer %r)", message.id, reason, error.body)
            self._outcome(message, "dead")
        else:  # UplinkTransient, and NO_NUMBER after a resync did not help
            await self._retry_later(message, error)

    async def _retry_later(self, message: OutboxMessage, error: UplinkError) -> None:
        if isinstance(error, UplinkTransient):
            self._state.backing_off(error)
        attempt = message.attempts + 1
        next_at = next_attempt_at(attempt, self._policy, now=self._clock(), error=error)
        await self._store.schedule_retry(
            message.id,
            attempt,
            next_at,
            f"{error.code}: {error}",
            status=error.status,
            body=error.body or None,
        )
        heapq.heappush(self._retry_times, next_at)
        log.warning(
            "message #%d: attempt %d failed (%s); next at +%.1f s",
            message.id,
            attempt,
            error.code,
            next_at - self._clock(),
        )
        self._outcome(message, "retry")

    def _outcome(self, message: OutboxMessage, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(message.id, outcome)

    async def _pause(self, error: UplinkAccountError) -> None:
        if self._state.pause(error):
            self._probe_failures = 0
            self._probe_at = asyncio.get_running_loop().time() + self._probe_delay()
            await self._store.log_event(
                "uplink_paused",
                f"OnlineSim refused the uplink: {error.code} (HTTP {error.status}); a person "
                "must fix the API key, the account or the base URL. Nothing is dropped; "
                "probing slowly.",
                level="alarm",
            )

    def _probe_delay(self) -> float:
        self._probe_failures += 1
        return next_delay(self._probe_failures, self._probe)

    # --- reads ------------------------------------------------------------------------------

    def _imsi_of(self, iccid: str) -> str | None:
        if iccid not in self._imsi:
            self._imsi[iccid] = Sim.select(Sim.imsi).where(Sim.iccid == iccid).scalar()
        return self._imsi[iccid]

    async def _load_retry_times(self, after: float | None = None) -> None:
        """The earliest persisted retry time (later than ``after``): a restart resumes the
        schedule it left, and when the times known in memory are used up the next one is
        read again, so no message backing off is ever forgotten."""

        def earliest() -> object:
            where = (Message.state == literal(PENDING)) & Message.next_attempt_at.is_null(False)
            if after is not None:
                where &= Message.next_attempt_at > after
            return Message.select(fn.MIN(Message.next_attempt_at)).where(where).scalar()

        found = await self._store.read(earliest)
        if found is not None:
            moment = Message.next_attempt_at.python_value(found)
            heapq.heappush(self._retry_times, moment.timestamp())

    async def _refresh_depth(self, now: float) -> None:
        if self._metrics is None or now - self._depth_at < _DEPTH_INTERVAL:
            return
        self._depth_at = now
        self._metrics.set_outbox_depth(await self._store.outbox_depth())
