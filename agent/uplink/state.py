"""The uplink's one state machine, shared by the outbox pump, the numbers sync and the
take-off poll (what each state means and does: docs/uplink.md, "Link health").

Four conditions, as a person on site would want them said:

- ``ok``: the last call succeeded (or none has failed yet);
- ``backing_off`` (link down): network errors, timeouts, 5xx, 429. The link has ONE
  back-off, not one per message: the pump sends one probe at a time on the transient
  policy (plus a freshly stored SMS at once), the backlog waits in SQLite;
- ``paused``: OnlineSim refused the key, the account or the URL (401/403/405). Nothing is
  sent but slow probes until one succeeds; nothing is dropped. ``code`` says why;
- ``store_not_writable`` (paused: store not writable): a write to the store failed because
  nothing can be written (full, read-only, I/O error). Nothing is sent, since what
  OnlineSim accepts could not be recorded; it ends when a write commits again. It wins
  over the link's condition in the snapshot: it is the reason nothing goes out.

Whoever calls OnlineSim reports each outcome here; the dashboard, ``/healthz`` and
``simedge status`` read :meth:`UplinkTracker.snapshot`. A success from any caller ends a link
fault or a pause for all of them (the link and the account are one), and every listener
hears it at once: the pump resumes every SIM, the numbers list goes up again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agent.errors import StoreNotWritable, UplinkError
from agent.status import UplinkCondition, UplinkStatus


@dataclass(frozen=True)
class UplinkSnapshot:
    """The uplink at one moment. Times are unix seconds; ``code`` is the API or network
    code of the failure that put the uplink in its condition (``None`` when ok)."""

    condition: UplinkCondition = UplinkCondition.OK
    code: str | None = None
    since: float = 0.0
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None

    def to_status(self) -> UplinkStatus:
        """The shared shape (agent.status) in which the dashboard reads it, from the
        snapshot and from every "uplink" event alike."""
        return UplinkStatus(
            state=self.condition,
            code=self.code,
            since=self.since,
            last_success_at=self.last_success_at,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
        )

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows: no message text, no numbers, no secrets."""
        return {"state": str(self.condition), "code": self.code, "since": self.since}


class UplinkTracker:
    """The one mutable uplink state of an agent; every change makes a new snapshot.

    ``clock`` is the wall clock, for the records (``since``, ``last_success_at``) only:
    nothing here schedules anything."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._link = UplinkSnapshot(since=clock())  # the link's own condition
        self._store_error: StoreNotWritable | None = None
        self._store_since = 0.0
        self._snapshot = self._link
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._listeners: list[Callable[[UplinkSnapshot], None]] = []
        self.link_failures = 0  # consecutive failed calls since the last success
        self.successes = 0  # calls that reached OnlineSim: see backing_off's successes_seen

    @property
    def snapshot(self) -> UplinkSnapshot:
        return self._snapshot

    @property
    def paused(self) -> bool:
        """The account refused us (401/403/405)."""
        return self._link.condition is UplinkCondition.PAUSED

    @property
    def link_down(self) -> bool:
        """A transient fault is the last word from the link (no pause, no success since)."""
        return self._link.condition is UplinkCondition.BACKING_OFF

    @property
    def store_paused(self) -> bool:
        """The store cannot write: nothing may be sent until it can."""
        return self._store_error is not None

    def store_unwritable(self, error: StoreNotWritable) -> None:
        """A write failed because the store cannot write (full, read-only, I/O error)."""
        if self._store_error is None:
            self._store_since = self._clock()
        self._store_error = error
        self._set(self._link)

    def store_writable(self) -> None:
        """A write committed again: the store pause ends."""
        if self._store_error is not None:
            self._store_error = None
            self._set(self._link)

    def on_change(self, listener: Callable[[UplinkSnapshot], None]) -> Callable[[], None]:
        """Call ``listener`` with each new snapshot; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def wait_resumed(self) -> None:
        """Return at once unless paused; else when a call succeeds again."""
        await self._resumed.wait()

    def succeeded(self) -> None:
        """A call went through: the link and the account are fine."""
        now = self._clock()
        previous = self._link
        self.link_failures = 0
        self.successes += 1
        condition_changed = previous.condition is not UplinkCondition.OK
        self._set(
            UplinkSnapshot(
                condition=UplinkCondition.OK,
                code=None,
                since=now if condition_changed else previous.since,
                last_success_at=now,
                last_error=previous.last_error,
                last_error_at=previous.last_error_at,
            )
        )

    def reached(self) -> None:
        """OnlineSim answered about the request itself (a 400: rejected, NO_NUMBER): the
        link and the account work, though nothing was uploaded."""
        previous = self._link
        self.link_failures = 0
        self.successes += 1
        if previous.condition is not UplinkCondition.OK:
            now = self._clock()
            self._set(replace(previous, condition=UplinkCondition.OK, code=None, since=now))

    def backing_off(self, error: UplinkError, *, successes_seen: int | None = None) -> bool:
        """A transient failure. It does not end a pause: only a success proves the account.

        ``successes_seen`` is :attr:`successes` when the failed call started. A call that
        was still out when another one succeeded (a connect that failed just before the
        link came back, its answer handled just after) is stale news: it is kept as the
        last error but does not take the link down again, or every part of the uplink
        would wait for its back-off with the link up. Returns whether it took it down."""
        if successes_seen is not None and successes_seen != self.successes:
            now = self._clock()
            self._set(replace(self._link, last_error=str(error), last_error_at=now))
            return False
        condition = UplinkCondition.PAUSED if self.paused else UplinkCondition.BACKING_OFF
        self._failed(condition, error)
        return True

    def pause(self, error: UplinkError) -> bool:
        """An account failure (401/403/405); returns True when this starts the pause, so
        that the caller raises the alarm once, not on every probe."""
        starts = not self.paused
        self._failed(UplinkCondition.PAUSED, error)
        return starts

    def _failed(self, condition: UplinkCondition, error: UplinkError) -> None:
        now = self._clock()
        previous = self._link
        self.link_failures += 1
        same = previous.condition is condition and previous.code == error.code
        self._set(
            UplinkSnapshot(
                condition=condition,
                code=error.code or type(error).__name__,
                since=previous.since if same else now,
                last_success_at=previous.last_success_at,
                last_error=str(error),
                last_error_at=now,
            )
        )

    def _set(self, link: UplinkSnapshot) -> None:
        self._link = link
        snapshot = link
        if self._store_error is not None:
            snapshot = replace(
                link,
                condition=UplinkCondition.STORE_NOT_WRITABLE,
                code=type(self._store_error).__name__,
                since=self._store_since,
                last_error=str(self._store_error),
            )
        self._snapshot = snapshot
        if snapshot.condition in (UplinkCondition.PAUSED, UplinkCondition.STORE_NOT_WRITABLE):
            self._resumed.clear()
        else:
            self._resumed.set()
        for listener in list(self._listeners):
            listener(snapshot)
