"""Take-off: which SIMs have earned enough to be swapped for new ones.

Every ``interval`` seconds :class:`TakeOffPoller` asks takeOffNumbers for the numbers that
earned at least ``takeoff_sum`` roubles and marks each listed SIM, by ICCID, with the sum
and the time (:class:`TakeOffMarks`, persisted on the SIM row). The optional ``date`` is
not sent: the API describes it only as "Date after number added", which read literally
filters by when a number was added, so any date later than a number's ``date_start``
could hide it and its SIM would never be marked (docs/uplink.md, "takeOffNumbers").
Without it every number at or above the sum is listed; marking is idempotent. The
dashboard and ``simedge status`` show "swap SIM in slot X".

A mark belongs to a SIM card, not to a slot: when a new ICCID appears in the slot of a
marked SIM, the swap is done (``takeoff_done_at``) and the new SIM comes online as a new
number, unmarked. ``takeoff_action`` decides what happens meanwhile: ``"offline"`` takes
a marked number out of the online list at once (it earns nothing more and the site stops
taking SMS for it), ``"keep"`` keeps it online until the SIM is swapped.

``takeoff_sum`` 0 disables polling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.errors import ControlError, UplinkAccountError, UplinkError, UplinkTransient
from agent.logs import get_logger
from agent.status import ModemStatus, TakeoffMark, UplinkCondition
from agent.store import Store
from agent.store.models import Sim
from agent.uplink.client import OnlineSimClient, TakeOffItem
from agent.uplink.policy import RetryPolicy, account_probe, retrying, transient_backoff
from agent.uplink.state import UplinkSnapshot, UplinkTracker

log = get_logger("uplink.takeoff")

TAKEOFF_OFFLINE = "offline"
TAKEOFF_KEEP = "keep"
TAKEOFF_ACTIONS = (TAKEOFF_OFFLINE, TAKEOFF_KEEP)


@dataclass(frozen=True)
class TakeOffMark:
    """A SIM that earned ``sum_rub`` and may be swapped; ``slot`` is where it was seen."""

    iccid: str
    slot: str | None
    number: str
    sum_rub: float
    at: datetime

    def to_status(self) -> TakeoffMark:
        """The shared shape (agent.status) in which the dashboard reads it."""
        return TakeoffMark(
            iccid=self.iccid,
            slot=self.slot,
            number=self.number,
            sum_rub=self.sum_rub,
            marked_at=self.at.timestamp(),
        )


class TakeOffMarks:
    """The open take-off marks (listed, not yet swapped), in memory and on the SIM rows.

    Loaded once with :meth:`load`; written through the store's single writer.
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._open: dict[str, TakeOffMark] = {}

    async def load(self) -> None:
        rows = Sim.select().where(Sim.takeoff_at.is_null(False) & Sim.takeoff_done_at.is_null())
        self._open = {
            row.iccid: TakeOffMark(
                row.iccid, row.last_slot, row.number or "", row.takeoff_sum or 0.0, row.takeoff_at
            )
            for row in rows
        }

    def is_marked(self, iccid: str) -> bool:
        return iccid in self._open

    def open_marks(self) -> list[TakeOffMark]:
        """The SIMs to swap, by slot: what the dashboard shows."""
        return sorted(self._open.values(), key=lambda mark: (mark.slot or "", mark.iccid))

    async def mark(self, iccid: str, slot: str | None, item: TakeOffItem) -> bool:
        """Mark the SIM listed by takeOffNumbers; True when the mark is new (or a new sum)."""
        known = self._open.get(iccid)
        if known is not None and known.sum_rub == item.sum:
            return False
        at = datetime.fromtimestamp(self._clock(), UTC)
        mark = TakeOffMark(iccid, slot, item.number, item.sum, at)

        def job() -> None:
            Sim.update(takeoff_sum=item.sum, takeoff_at=at, takeoff_done_at=None).where(
                Sim.iccid == iccid
            ).execute()

        await self._store.writer.submit(job, f"mark SIM {iccid} for take-off")
        await self._store.log_event(
            "takeoff",
            f"swap SIM in slot {slot or '?'}: {item.number} earned {item.sum:g} RUB",
            level="warning",
            slot=slot,
            iccid=iccid,
            at=at,
        )
        self._open[iccid] = mark
        return True

    async def settle(self, statuses: Iterable[ModemStatus]) -> list[str]:
        """Close the marks of SIMs whose slot now holds another ICCID; returns their ICCIDs."""
        holder = {status.slot: status.iccid for status in statuses if status.iccid}
        swapped = [
            mark
            for mark in self._open.values()
            if mark.slot is not None
            and holder.get(mark.slot) is not None
            and holder[mark.slot] != mark.iccid
        ]
        if not swapped:
            return []
        for mark in swapped:
            await self._close(
                mark,
                f"SIM in slot {mark.slot} swapped: {mark.number} left, {holder[mark.slot]} came in",
            )
        return [mark.iccid for mark in swapped]

    async def done(self, iccid: str) -> None:
        """A person says the SIM was swapped (or should no longer be marked)."""
        mark = self._open.get(iccid)
        if mark is None:
            raise ControlError(f"no open take-off mark for SIM {iccid}")
        await self._close(
            mark, f"take-off mark of {mark.number} in slot {mark.slot} cleared by hand"
        )

    async def _close(self, mark: TakeOffMark, why: str) -> None:
        # Taken out before the write is awaited: the supervisor (on a modem change) and the
        # numbers sync (before a list) both settle, and a mark is closed and logged once.
        if self._open.get(mark.iccid) is not mark:
            return
        del self._open[mark.iccid]
        at = datetime.fromtimestamp(self._clock(), UTC)

        def job() -> None:
            Sim.update(takeoff_done_at=at).where(Sim.iccid == mark.iccid).execute()

        try:
            await self._store.writer.submit(job, f"close the take-off mark of {mark.iccid}")
        except BaseException:
            self._open.setdefault(mark.iccid, mark)  # still open on disk: still open here
            raise
        await self._store.log_event("takeoff_done", why, slot=mark.slot, iccid=mark.iccid, at=at)


class TakeOffPoller:
    """The loop that asks takeOffNumbers every ``interval`` seconds and marks SIMs.

    ``numbers_of`` maps an E.164 number to the (ICCID, slot) of the live SIM that has it
    (the numbers sync knows); a listed number that no live SIM holds is logged and skipped.
    ``on_marked`` runs after new marks (the numbers sync's ``notify_change``, so that the
    "offline" action takes effect in the next list).
    """

    def __init__(
        self,
        client: OnlineSimClient,
        marks: TakeOffMarks,
        numbers_of: Callable[[], dict[str, tuple[str, str | None]]],
        *,
        sum_rub: float,
        interval: float,
        on_marked: Callable[[], None] = lambda: None,
        state: UplinkTracker | None = None,
        policy: RetryPolicy | None = None,
        probe: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._marks = marks
        self._numbers_of = numbers_of
        self._sum = sum_rub
        self._interval = interval
        self._on_marked = on_marked
        self._state = state or UplinkTracker(clock)
        self._policy = policy or transient_backoff()
        self._probe = probe or account_probe()
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._sum > 0

    async def poll_once(self) -> list[TakeOffItem]:
        """One takeOffNumbers call and its marks; raises the client's ``UplinkError``."""
        # No ``date``: see the module docstring (it could hide the numbers to mark).
        items = await self._client.take_off_numbers(sum_rub=self._sum, since=None)
        self._state.succeeded()
        holders = self._numbers_of()
        marked = False
        for item in items:
            holder = holders.get(item.number)
            if holder is None:
                log.warning("takeOffNumbers listed %s, which no live SIM holds", item.number)
                continue
            iccid, slot = holder
            marked |= await self._marks.mark(iccid, slot, item)
        if marked:
            self._on_marked()
        return items

    async def run(self) -> None:
        """Poll until cancelled; returns at once when ``takeoff_sum`` is 0.

        Each poll is retried by tenacity (agent.uplink.policy.retrying): a flaky link
        with the transient back-off, a refused account with the slow probe until a
        person has fixed it; either wait ends early when another call succeeds (the link
        is back). A rejected query waits for the next regular poll. The interval is on
        the monotonic clock (asyncio's)."""
        if not self.enabled:
            log.info("take-off polling disabled (takeoff_sum = 0)")
            return
        while True:
            try:
                try:
                    await retrying(self._policy, sleep=self._wait, on_retry=self._failed)(
                        self.poll_once
                    )
                except UplinkAccountError as error:
                    self._failed(error)
                    await retrying(self._probe, sleep=self._wait, on_retry=self._failed)(
                        self.poll_once
                    )
            except UplinkError as error:
                # A rejected query cannot improve by itself; ask again on the schedule.
                log.error("takeOffNumbers refused: %s (body %r)", error, error.body)
            await asyncio.sleep(self._interval)

    async def _wait(self, seconds: float) -> None:
        """tenacity's sleep: ``seconds``, or less when another call succeeds meanwhile."""
        link_back = asyncio.Event()

        def changed(snapshot: UplinkSnapshot) -> None:
            if snapshot.condition is UplinkCondition.OK:
                link_back.set()

        remove = self._state.on_change(changed)
        try:
            async with asyncio.timeout(seconds):
                await link_back.wait()
        except TimeoutError:
            pass
        finally:
            remove()

    def _failed(self, error: BaseException) -> None:
        if isinstance(error, UplinkAccountError):
            self._state.pause(error)
        elif isinstance(error, UplinkTransient):
            self._state.backing_off(error)
