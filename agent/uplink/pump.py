"""The outbox pump: every complete, unblocked SMS to addMessage, in order per SIM.

What each answer does, the link's states and the delivery promise are written down in
docs/uplink.md; this module is where they are kept.

Wake-ups, not polling: the pump sleeps on one event that the store sets after every
commit that makes a message due (``Store.on_message_ready``: an ingest, a sent message
whose SIM has a next one, a retry by hand) and that the uplink state sets when it changes.
Otherwise it sleeps until its next timer, always on the monotonic clock (the event
loop's): the link's next probe, the store's next probe, or the earliest per-message retry.
A wake-up that only says "SIM X has a fresh message" while the link is up reads only X's
queue (by its own index), not every SIM's first pending message: that scan, once per SMS,
was a tenth of the agent's CPU per SMS (issue 19). Every other wake-up scans.

Order and parallelism: ``Store.due_messages`` hands out at most the first pending message
of each SIM, so a SIM's messages go one at a time in receipt order while different SIMs
go in parallel, up to ``max_in_flight`` requests.

Each answer, as docs/onlinesim-api.md and docs/uplink.md say:

- success: ``mark_sent``; metrics count it and observe receipt-to-acceptance latency;
  the link is up for everyone: every SIM's queue resumes at once;
- network errors, timeouts, 5xx, 429 (``UplinkTransient``): the LINK is down, not the
  message. The attempt is kept in the message's history (``record_link_failure``) but the
  message gets no retry time of its own. While the link is down the pump sends one probe
  at a time (the oldest SIM's first pending message) on the transient policy, and a
  freshly stored SMS makes its SIM's first pending message a probe at once (bounded:
  each stored SMS earns at most one call, at most ``max_in_flight`` in flight), so a new
  code goes up the moment the link is back whatever the probe's back-off has grown to;
- 401/403/405 (``UplinkAccountError``): the whole uplink pauses with an alarm event;
  nothing is written off; one probe (the next due message) goes up every
  ``account_probe`` interval until one succeeds (or another part of the uplink succeeds);
- NO_NUMBER: the numbers list is sent again (``NumbersSync.resync``), then the message
  is tried once more; if it still fails it backs off on its own, persisted retry time;
- NUMBER_FORMAT_ERROR, ERROR_PARAMS, ERROR_DATE and any other refusal
  (``UplinkRejected``): a dead letter with the reason, the status and the raw answer,
  re-sendable by hand (``Store.retry`` / ``retry_all_dead``).

The store cannot write (``StoreNotWritable``: full, read-only, I/O error), whoever's write
failed: nothing is sent (the uplink says "paused: store not writable") and the pump
probes the store on the ``store_probe`` policy until a write commits. A message OnlineSim
accepted but whose ``mark_sent`` failed is kept in a bounded in-memory set and recorded as
sent first thing when the store writes again, never sent again (only a crash in between
sends it twice).

Clocks: every wait is on the event loop's monotonic clock. The wall clock (``clock``) is
only written into records; a persisted retry time is shifted by any jump of the wall
clock the pump sees against the monotonic one, and clamped to the policy's cap at start.

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

from agent.clock import WallClockWatch
from agent.errors import (
    StoreError,
    StoreNotWritable,
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
    link_probe,
    next_delay,
    store_probe,
)
from agent.uplink.state import UplinkCondition, UplinkSnapshot, UplinkTracker

if TYPE_CHECKING:
    from agent.webhook.metrics import Metrics

log = get_logger("uplink.pump")

#: How often at most the outbox depth gauge is refreshed (it counts rows). A change within
#: the interval is not dropped: the pump wakes once the interval is over and counts again,
#: so the gauge settles on the true depth (0 after a drain) even when nothing else happens.
_DEPTH_INTERVAL = 1.0
SIM_BATCH = 32  # a SIM's messages read at once while its queue drains
#: Accepted-but-unrecorded messages kept in memory at most (see ``_unrecorded``). The
#: pump sends nothing while the store cannot write, so only the requests in flight when a
#: write failed can land here: at most ``max_in_flight`` per failure. Past this bound
#: the pump sends nothing more until they are recorded.
UNRECORDED_LIMIT = 256


class OutboxPump:
    """Drains the outbox to addMessage until cancelled. Run :meth:`run` as a task.

    ``policy`` is the link's back-off while it is down (and a message's own back-off after
    NO_NUMBER), ``probe`` the pace of probes while paused, ``store_policy`` the pace of
    store probes while it cannot write (all from :mod:`agent.uplink.policy`; tests inject
    tiny ones). ``numbers`` answers NO_NUMBER with a new list; ``resync_timeout`` bounds the
    wait for it. ``clock`` is the wall clock, for records only. ``on_outcome`` is called
    with (message id, "sent" | "retry" | "dead" | "paused" | "unrecorded") once each outcome
    is handled, with (message id, "accepted") when OnlineSim accepted a message whose "sent"
    is not committed yet ("sent" follows, or "unrecorded"), and with (0, "store probe")
    after each store probe that failed: for a live view of the outbox, and for tests to
    wait on.
    """

    def __init__(
        self,
        client: OnlineSimClient,
        store: Store,
        *,
        policy: RetryPolicy | None = None,
        probe: RetryPolicy | None = None,
        store_policy: RetryPolicy | None = None,
        numbers: NumbersSync | None = None,
        state: UplinkTracker | None = None,
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
        self._policy = policy or link_probe()
        self._probe = probe or account_probe()
        self._store_policy = store_policy or store_probe()
        self._numbers = numbers
        self._state = state or UplinkTracker(clock)
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._batch = max(batch, max_in_flight)
        self._resync_timeout = resync_timeout
        self._clock = clock
        self._on_outcome = on_outcome
        self._wake = asyncio.Event()
        # Whether the next dispatch must scan every SIM's first pending message (True) or
        # may serve only the SIMs in _fresh. Everything but "SIM X has a fresh message"
        # asks for a scan (_wake_to_scan), and so does the start.
        self._scan_owed = True
        # SIMs the store said have a fresh message since their queue was last read; at
        # most one entry per SIM with a stored message. A SIM's task reads its queue again
        # after its last message when its SIM is here (see _serve_sim).
        self._fresh: set[str] = set()
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # ICCID -> its one request
        self._retry_times: list[float] = []  # heap of per-message retry times (loop time)
        self._probe_at = 0.0  # loop time of the next probe while paused
        self._probe_failures = 0
        # While the link is down: loop time of the next scheduled probe (None: the link
        # is up), its failures so far, and the fresh SMS that may go at once as probes.
        self._link_probe_at: float | None = None
        self._link_failures = 0
        self._probe_out = False  # the scheduled probe is in flight
        self._fresh_credits = 0
        # While the store cannot write: loop time of the next store probe, its failures.
        self._store_probe_at = 0.0
        self._store_failures = 0
        # Accepted by OnlineSim, not recorded (the store failed): id -> wall time accepted.
        self._unrecorded: dict[int, float] = {}
        # Accepted, their "sent" riding with the next commit (Store.mark_sent_soon): ICCID ->
        # (message id, the commit's future). One per SIM at most: a SIM's next message waits
        # for its last one's (_recorded_before). Never sent again meanwhile; counted with
        # _unrecorded against UNRECORDED_LIMIT.
        self._riding: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._held_by_recording = False  # a scan skipped a SIM whose first one is recording
        self._watch: WallClockWatch | None = None  # made in run(), on the loop's clock
        self._cap_at_start = True  # persisted retry times not capped yet since the start
        self._imsi: dict[str, str | None] = {}
        self._depth_at = -float("inf")
        self._depth_stale = False  # a refresh was skipped within the interval: owed one
        self.forwarded = 0  # messages accepted since start (benchmarks, tests)
        self._condition_seen = UplinkCondition.OK  # the last one _state_changed saw
        # The last scan found due messages it had no room to start (see _done).
        self._room_short = False

    @property
    def state(self) -> UplinkTracker:
        return self._state

    @property
    def unrecorded(self) -> frozenset[int]:
        """Messages OnlineSim accepted whose "sent" could not be written yet."""
        return frozenset(self._unrecorded)

    async def run(self) -> None:
        """Deliver until cancelled; in-flight requests are cancelled with it (their
        messages stay pending and go again after a restart)."""
        remove_ready = self._store.on_message_ready(self._message_ready)
        self._condition_seen = self._state.snapshot.condition  # from here on it sees them all
        remove_state = self._state.on_change(self._state_changed)
        remove_writable = self._store.on_writable_change(self._writable_changed)
        if not self._store.writable:
            self._writable_changed(self._store.writer.unwritable)
        loop = asyncio.get_running_loop()
        self._watch = WallClockWatch(self._clock, loop.time)
        try:
            await self._follow_wall_clock()
            await self._load_retry_times()
            while True:
                self._wake.clear()
                await self._follow_wall_clock()
                now = loop.time()
                if self._state.store_paused:
                    if now >= self._store_probe_at and not self._in_flight:
                        await self._probe_store(now)
                        continue
                elif self._unrecorded:
                    await self._probe_store(now)
                    continue
                elif self._state.paused:
                    # One probe at a time, every probe interval, until a call succeeds.
                    if now >= self._probe_at and not self._in_flight:
                        self._probe_at = now + self._probe_delay()
                        await self._dispatch(1)
                elif self._state.link_down:
                    await self._probe_link(now)
                else:
                    self._link_probe_at = None
                    self._link_failures = self._fresh_credits = 0
                    self._probe_out = False
                    room = self._max_in_flight - len(self._in_flight)
                    if self._scan_owed:
                        await self._dispatch(room)
                    else:
                        self._dispatch_fresh(room)
                await self._refresh_depth(now)
                await self._sleep(self._next_wake_in(loop.time()))
                if self._retry_times and self._retry_times[0] <= loop.time():
                    self._scan_owed = True  # a message's retry time came: the scan finds it
        finally:
            remove_ready()
            remove_state()
            remove_writable()
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    def _state_changed(self, snapshot: UplinkSnapshot) -> None:
        """Wake the loop for a new uplink state. Every accepted message sends one (OK to
        OK, with a new last success); that one changes nothing the loop decides on, and
        the request's own end wakes it anyway, so it is skipped: waking on it cost a
        scan of every SIM's queue per message (issue 19)."""
        ok = UplinkCondition.OK
        unchanged = snapshot.condition is ok and self._condition_seen is ok
        self._condition_seen = snapshot.condition
        if not unchanged:
            self._wake_to_scan()

    # --- the link's one probe ---------------------------------------------------------------

    def _message_ready(self, iccid: str | None) -> None:
        """A commit made a message of SIM ``iccid`` due (None: of any SIM's; a scan then
        finds it). While the link is down, a fresh SMS is itself a probe (one call per
        commit, see _link_room), so that it goes up the moment the link is back rather than
        at the probe's next back-off. Counted whatever the state now: the link may go down
        before the pump looks; while it is up the credits are unused and cleared. (A
        message's "sent" notifies nobody: its SIM's task reads the SIM's next messages
        itself, see _sent.)"""
        self._fresh_credits = min(self._fresh_credits + 1, self._max_in_flight)
        if iccid is None:
            self._scan_owed = True
        else:
            self._fresh.add(iccid)
        self._wake.set()

    def _wake_to_scan(self) -> None:
        """Wake the loop to look at every SIM's first pending message."""
        self._scan_owed = True
        self._wake.set()

    async def _probe_link(self, now: float) -> None:
        """While the link is down, start at most: the scheduled probe when it is due and
        nothing is in flight (one at a time), plus one request per fresh SMS, never more
        than ``max_in_flight`` at once. A fresh SMS's credit is spent only by a request
        that started (its SIM may have one out: it waits for that one to end)."""
        if self._link_probe_at is None:  # another part of the uplink saw the link go down
            self._link_probe_at = now + next_delay(1, self._policy)
        scheduled = now >= self._link_probe_at and not self._in_flight
        room = min(self._fresh_credits + scheduled, self._max_in_flight - len(self._in_flight))
        started = await self._dispatch(room)
        if scheduled:
            # Rescheduled by the probe's failure; until then (or, with nothing to send, for
            # the cap: a fresh SMS probes at once anyway), not again.
            self._link_probe_at = now + self._policy.cap
            self._probe_out = started > 0
            started -= self._probe_out
        self._fresh_credits = max(0, self._fresh_credits - started)

    def _link_failed(self, error: UplinkTransient, successes_seen: int) -> None:
        """The link's back-off grows with the scheduled probe's own failures (and the one
        that took the link down), not with every call that failed meanwhile: thirty fresh
        SMS failing in an outage must not push the next probe to the cap. A call that
        failed while another one succeeded leaves the link up: its message goes again."""
        if not self._state.backing_off(error, successes_seen=successes_seen):
            self._probe_out = False
            self._wake_to_scan()
            return
        if self._link_probe_at is not None and not self._probe_out:
            return  # a fresh SMS's call or one in flight before: the schedule stands
        self._probe_out = False
        self._link_failures += 1
        delay = next_delay(self._link_failures, self._policy, error=error)
        self._link_probe_at = asyncio.get_running_loop().time() + delay
        if error.retry_after is not None:
            # The server asked for a pause: fresh SMS wait for it too.
            self._fresh_credits = 0
        log.warning(
            "uplink: link down (%s); next probe in %.1f s, or at once for a new SMS",
            error.code,
            delay,
        )

    # --- the store's probe ------------------------------------------------------------------

    def _writable_changed(self, error: StoreNotWritable | None) -> None:
        if error is None:
            self._store_failures = 0
            self._state.store_writable()
            log.info("store writable again: the uplink resumes")
        else:
            if not self._state.store_paused:
                self._store_failures = 0
                self._schedule_store_probe()
                log.error("store cannot write (%s): uplink paused until it can", error)
            self._state.store_unwritable(error)
        self._wake_to_scan()

    def _schedule_store_probe(self) -> None:
        self._store_failures += 1
        delay = next_delay(self._store_failures, self._store_policy)
        self._store_probe_at = asyncio.get_running_loop().time() + delay

    async def _probe_store(self, now: float) -> None:
        """A small real write; success ends the pause (through the writer's listener)."""
        try:
            if self._unrecorded:
                await self._record_unrecorded()
            else:
                await self._store.probe_write()
        except StoreNotWritable:
            self._schedule_store_probe()
            if self._on_outcome is not None:
                self._on_outcome(0, "store probe")

    async def _record_unrecorded(self) -> None:
        """Record as sent what OnlineSim accepted while the store could not write."""
        for message_id, accepted_at in sorted(self._unrecorded.items()):
            try:
                await self._store.mark_sent(message_id, accepted_at, 200, None)
            except StoreNotWritable:
                raise
            except StoreError as error:  # gone or no longer pending: nothing to record
                log.error("message #%d accepted but cannot be recorded: %s", message_id, error)
            del self._unrecorded[message_id]
            if self._on_outcome is not None:
                self._on_outcome(message_id, "sent")
            log.info("message #%d: recorded as sent (accepted earlier), not sent again", message_id)

    # --- the wall clock -----------------------------------------------------------------------

    async def _follow_wall_clock(self) -> None:
        """Shift persisted retry times by any jump of the wall clock (measured against the
        monotonic one) and cap them at the policy's cap from now: nothing waits for a clock
        being set right. At start a jump cannot be seen: only the cap applies. Until the
        store could write the move, the jump stays pending (and the store pause is on)."""
        assert self._watch is not None
        shift = self._watch.jumped()
        if not (self._cap_at_start or shift):
            return
        try:
            moved = await self._store.clamp_retry_times(self._clock(), shift, self._policy.cap)
        except StoreNotWritable:
            return
        self._watch.settle(shift)
        self._cap_at_start = False
        if shift:
            log.warning("wall clock jumped by %+.0f s: %d retry times moved with it", shift, moved)

    # --- dispatch ---------------------------------------------------------------------------

    async def _dispatch(self, room: int) -> int:
        """Start up to ``room`` SIM tasks; returns how many started."""
        if room <= 0 or self._recording_full():
            return 0
        self._held_by_recording = False
        self._scan_owed = False  # a wake-up during the read asks for the next one
        started = 0
        scanned_at = self._clock()
        due = await self._store.due_messages(scanned_at, self._batch)
        # Retry times up to now are covered by the scan, but only up to the wall time it
        # read with: a retry time on the loop's clock can come a little before its
        # message's time on the wall clock (uvloop reads its clock once per turn, in
        # milliseconds), and that message was not due yet. So after any timer is used up,
        # the next retry time is read again from the store, from ``scanned_at`` on: it is
        # never lost, and this also reads the next one when only the earliest after a
        # restart was known in memory.
        now = asyncio.get_running_loop().time()
        if self._retry_times and self._retry_times[0] <= now:
            while self._retry_times and self._retry_times[0] <= now:
                heapq.heappop(self._retry_times)
            await self._load_retry_times(after=scanned_at)
        self._room_short = False
        for message in due:
            if room <= 0:
                self._room_short = True
                break
            if self._is_riding(message):
                # Accepted, its "sent" not committed yet: the SIM's next one (if any) goes
                # once it is (_recorded wakes the loop for it).
                self._held_by_recording = True
                continue
            if (
                message.iccid in self._in_flight
                or message.number is None
                or message.id in self._unrecorded
            ):
                # Its SIM has a request out, or its number is not known yet (setting the
                # number wakes the pump), or it went up already and waits to be recorded.
                continue
            self._start(message.iccid, [message])
            room -= 1
            started += 1
        return started

    def _dispatch_fresh(self, room: int) -> None:
        """Start, up to ``room``, the tasks of the SIMs with a fresh message: each reads
        its own queue. A SIM with a task out is left to that task (it reads its queue
        again when its SIM is in _fresh)."""
        if self._recording_full():
            return
        self._room_short = False
        for iccid in [iccid for iccid in self._fresh if iccid not in self._in_flight]:
            if room <= 0:
                self._room_short = True  # the rest wait for a task to end (_done)
                return
            self._start(iccid, None)
            room -= 1

    def _recording_full(self) -> bool:
        """Too many accepted messages wait for their "sent" to be written: nothing starts
        until some are (their _recorded wakes the loop)."""
        if len(self._unrecorded) + len(self._riding) < UNRECORDED_LIMIT:
            return False
        self._held_by_recording = True
        return True

    def _start(self, iccid: str, queue: list[OutboxMessage] | None) -> None:
        task = asyncio.create_task(self._serve_sim(iccid, queue), name=f"outbox {iccid}")
        self._in_flight[iccid] = task
        task.add_done_callback(lambda _task: self._done(iccid))

    def _done(self, iccid: str) -> None:
        """A SIM's task ended. The loop is woken only when that can start something: a
        task that drained its SIM's queue with the link up changes nothing the loop would
        act on (a message committed meanwhile wakes it by itself, and the task read its
        SIM's queue after every commit it could have missed), and waking on it cost a scan
        of every SIM's queue per message (issue 19). It is woken when the task stopped
        short (a failure, the uplink stopping), when a scan left due messages for want of
        room, when the pump was full (its sleep then ignored the retry timers), and when
        the depth gauge has no refresh pending (a wake-up without a scan)."""
        was_full = len(self._in_flight) >= self._max_in_flight
        task = self._in_flight.pop(iccid)
        drained = False
        if not task.cancelled():
            if task.exception() is not None:
                log.error("delivery task failed", exc_info=task.exception())
            else:
                drained = bool(task.result())
        if not drained or self._stopped() or self._room_short or was_full:
            self._wake_to_scan()
        elif self._metrics is not None and not self._depth_stale:
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

    def _next_wake_in(self, now: float) -> float | None:
        """Seconds to the pump's next timer (<= 0: look now); None when only a wake-up
        can bring new work (a finishing request, a commit, a change of the state). An owed
        refresh of the depth gauge is a timer too."""
        work = self._next_work_in(now)
        if not self._depth_stale:
            return work
        depth = self._depth_at + _DEPTH_INTERVAL - now
        return depth if work is None else min(work, depth)

    def _next_work_in(self, now: float) -> float | None:
        if self._state.store_paused:
            return None if self._in_flight else self._store_probe_at - now
        if self._state.paused:
            return None if self._in_flight else self._probe_at - now
        if self._state.link_down:
            if self._link_probe_at is None or self._in_flight:
                return None
            return self._link_probe_at - now
        if not self._retry_times or len(self._in_flight) >= self._max_in_flight:
            return None
        return self._retry_times[0] - now

    # --- one message ------------------------------------------------------------------------

    def _stopped(self) -> bool:
        """Whether a SIM's task should stop after its current message."""
        state = self._state
        return state.paused or state.link_down or state.store_paused

    async def _serve_sim(self, iccid: str, queue: list[OutboxMessage] | None) -> bool:
        """One SIM's queue, in order, by one task: ``queue`` (a scan's first message of the
        SIM; None: read it), then whatever is due after it, read a batch at a time by the
        SIM's own index. The queue is read again after its last message unless it was read
        whole and the store said nothing of the SIM since (_fresh): one read per SMS, not
        two (issue 19). It stops at the first message that is not accepted or when the
        uplink stops; the next scan picks the SIM up again. True when it drained the queue
        (nothing of the SIM is due now)."""
        whole = False  # ``queue`` is all the SIM had due when it was read
        try:
            while True:
                if queue is None:
                    self._fresh.discard(iccid)  # a commit from here on adds it again
                    queue = await self._store.sim_queue(iccid, self._clock(), SIM_BATCH)
                    whole = len(queue) < SIM_BATCH
                    if all(self._is_riding(message) for message in queue):
                        return True
                for message in queue:
                    if self._is_riding(message):
                        continue  # accepted already; its "sent" is on the way to the disk
                    if not await self._recorded_before(message.iccid):
                        return False
                    if message.number is None or not await self._deliver(message):
                        return False
                    if self._stopped():
                        return False
                if whole and iccid not in self._fresh:
                    return True
                queue = None
        except StoreNotWritable:
            return False  # the writer's listener paused the uplink; the store probe resumes it

    async def _deliver(self, message: OutboxMessage) -> bool:
        """One addMessage and its recorded outcome; True when OnlineSim accepted it."""
        assert message.number is not None  # _dispatch skips the others
        number = e164_or_raw(message.number, self._imsi_of(message.iccid))
        successes_seen = self._state.successes
        try:
            await self._add(message, number)
        except UplinkNoNumber as error:
            self._state.reached()
            if self._numbers is None or not await self._resynced():
                await self._retry_later(message, error)
                return False
            successes_seen = self._state.successes
            try:
                await self._add(message, number)
            except UplinkError as again:
                await self._failed(message, again, successes_seen)
                return False
        except UplinkError as error:
            await self._failed(message, error, successes_seen)
            return False
        self._sent(message, self._clock())
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

    def _sent(self, message: OutboxMessage, accepted_at: float) -> None:
        """OnlineSim accepted ``message``: its "sent" rides with the next commit
        (Store.mark_sent_soon); until then it is kept as recording, never sent again."""
        self._probe_failures = 0
        self._state.succeeded()
        recorded = self._store.mark_sent_soon(message.id, accepted_at, 200, None)
        self._riding[message.iccid] = (message.id, recorded)
        recorded.add_done_callback(lambda future: self._recorded(message, accepted_at, future))
        self._outcome(message, "accepted")

    async def _recorded_before(self, iccid: str) -> bool:
        """Wait until the SIM's last "sent" is committed before its next message goes, as
        when each was awaited: a store that cannot write stops a SIM's queue after one
        message, not after all of it. False when that record failed. In the common case
        (one SMS per SIM at a time) it was committed long ago and nothing waits."""
        if iccid not in self._riding:
            return True
        _, riding = self._riding[iccid]
        if not riding.done():
            self._store.writer.commit_riders_now()
            await asyncio.wait((riding,))  # never cancels the record itself
        return riding.exception() is None

    def _is_riding(self, message: OutboxMessage) -> bool:
        """Whether OnlineSim accepted ``message`` and its "sent" is not committed yet."""
        riding = self._riding.get(message.iccid)
        return riding is not None and riding[0] == message.id

    def _recorded(
        self, message: OutboxMessage, accepted_at: float, future: asyncio.Future[None]
    ) -> None:
        """The "sent" of ``message`` committed, or failed. (Its SIM's next message may be
        riding already: the SIM's task can see the future done before this callback runs.)"""
        if self._is_riding(message):
            del self._riding[message.iccid]
        error = future.exception()
        if self._held_by_recording:
            self._wake_to_scan()  # a scan skipped its SIM for it: the SIM's next one may go
        if error is not None:
            # OnlineSim has it; sending it again would be a duplicate. Kept in memory and
            # recorded first thing when the store writes again (the store's listener
            # pauses the uplink for the failed write meanwhile).
            self._unrecorded[message.id] = accepted_at
            log.error("message #%d accepted, its record failed: %s", message.id, error)
            self._outcome(message, "unrecorded")
            self._wake_to_scan()
            return
        self.forwarded += 1
        if self._metrics is not None:
            self._metrics.sms_forwarded()
            delay = accepted_at - message.received_at.timestamp()
            self._metrics.observe_delivery(max(0.0, delay))
        self._outcome(message, "sent")

    async def _failed(
        self, message: OutboxMessage, error: UplinkError, successes_seen: int
    ) -> None:
        if self._metrics is not None:
            self._metrics.uplink_error(error.code or type(error).__name__)
        if isinstance(error, UplinkAccountError):
            await self._pause(error)
            self._outcome(message, "paused")
        elif isinstance(error, UplinkRejected):
            self._state.reached()
            reason = f"{error.code}: {error}"
            await self._store.dead_letter(message.id, reason, error.status, error.body)
            if self._metrics is not None:
                self._metrics.sms_dead()
            log.error("message #%d dead: %s (answer %r)", message.id, reason, error.body)
            self._outcome(message, "dead")
        elif isinstance(error, UplinkTransient):
            self._link_failed(error, successes_seen)
            await self._store.record_link_failure(
                message.id, f"{error.code}: {error}", status=error.status, body=error.body or None
            )
            self._outcome(message, "retry")
        else:  # NO_NUMBER after a resync did not help: about this message
            await self._retry_later(message, error)

    async def _retry_later(self, message: OutboxMessage, error: UplinkError) -> None:
        """A back-off of the message's own, persisted (answers about this message only)."""
        attempt = message.attempts + 1
        delay = next_delay(attempt, self._policy, error=error)
        await self._store.schedule_retry(
            message.id,
            attempt,
            self._clock() + delay,
            f"{error.code}: {error}",
            status=error.status,
            body=error.body or None,
        )
        heapq.heappush(self._retry_times, asyncio.get_running_loop().time() + delay)
        log.warning(
            "message #%d: attempt %d failed (%s); next at +%.1f s",
            message.id,
            attempt,
            error.code,
            delay,
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
        """The earliest persisted retry time (later than ``after``, wall clock), as a loop
        time: a restart resumes the schedule it left, and when the times known in memory
        are used up the next one is read again, so no message backing off is forgotten.
        The retry times were capped at start (_follow_wall_clock), so none is far off."""

        def earliest() -> object:
            where = (Message.state == literal(PENDING)) & Message.next_attempt_at.is_null(False)
            if after is not None:
                where &= Message.next_attempt_at > after
            return Message.select(fn.MIN(Message.next_attempt_at)).where(where).scalar()

        found = await self._store.read(earliest)
        if found is not None:
            moment = Message.next_attempt_at.python_value(found).timestamp()
            wait = min(max(0.0, moment - self._clock()), self._policy.cap)
            heapq.heappush(self._retry_times, asyncio.get_running_loop().time() + wait)

    async def _refresh_depth(self, now: float) -> None:
        if self._metrics is None:
            return
        if now - self._depth_at < _DEPTH_INTERVAL:
            self._depth_stale = True
            return
        self._depth_at = now
        self._depth_stale = False
        self._metrics.set_outbox_depth(await self._store.outbox_depth())
