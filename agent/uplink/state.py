"""The uplink's own state, shared by the outbox pump, the numbers sync and the take-off poll.

Three conditions, as a person on site would want them said:

- ``ok``: the last call succeeded (or none has failed yet);
- ``backing_off``: the link is flaky (network, timeouts, 5xx, 429); calls are retried on
  the transient policy, the backlog waits in SQLite;
- ``paused``: OnlineSim refused the key, the account or the URL (401/403/405). Nothing is
  sent but slow probes until one succeeds; nothing is dropped. ``code`` says why.

Whoever calls OnlineSim reports each outcome here; the dashboard, ``/healthz`` and
``simedge status`` read :meth:`UplinkState.snapshot`. A success from any caller ends a
pause for all of them: the account is one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.errors import UplinkError
from agent.status import UplinkState as UplinkStatusState
from agent.status import UplinkStatus


class UplinkCondition(StrEnum):
    OK = "ok"
    BACKING_OFF = "backing_off"
    PAUSED = "paused"


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
            state=UplinkStatusState(str(self.condition)),
            code=self.code,
            since=self.since,
            last_success_at=self.last_success_at,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
        )

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows: no message text, no numbers, no secrets."""
        return {"state": str(self.condition), "code": self.code, "since": self.since}


class UplinkState:
    """The one mutable uplink state of an agent; every change makes a new snapshot."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._snapshot = UplinkSnapshot(since=clock())
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._listeners: list[Callable[[UplinkSnapshot], None]] = []

    @property
    def snapshot(self) -> UplinkSnapshot:
        return self._snapshot

    @property
    def paused(self) -> bool:
        return self._snapshot.condition is UplinkCondition.PAUSED

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
        previous = self._snapshot
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

    def backing_off(self, error: UplinkError) -> None:
        """A transient failure. It does not end a pause: only a success proves the account."""
        condition = UplinkCondition.PAUSED if self.paused else UplinkCondition.BACKING_OFF
        self._failed(condition, error)

    def pause(self, error: UplinkError) -> bool:
        """An account failure (401/403/405); returns True when this starts the pause, so
        that the caller raises the alarm once, not on every probe."""
        starts = not self.paused
        self._failed(UplinkCondition.PAUSED, error)
        return starts

    def _failed(self, condition: UplinkCondition, error: UplinkError) -> None:
        now = self._clock()
        previous = self._snapshot
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

    def _set(self, snapshot: UplinkSnapshot) -> None:
        self._snapshot = snapshot
        if snapshot.condition is UplinkCondition.PAUSED:
            self._resumed.clear()
        else:
            self._resumed.set()
        for listener in list(self._listeners):
            listener(snapshot)
