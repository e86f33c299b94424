"""Jumps of the wall clock, seen against the monotonic one.

The agent waits only on the monotonic clock; the wall clock goes into records. A few
records are read back as times to wait for (a message's persisted retry time, the
arrival of a long SMS's first part): when the wall clock jumps (a Pi has no RTC; NTP
sets it right late, by an hour or a year), those must move with it, or a wait would
grow or shrink by the jump. :class:`WallClockWatch` says by how much it jumped since the
last settled look (docs/uplink.md, "Clocks").
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: A wall clock that moved this much more (or less) than the monotonic one jumped;
#: below it, NTP's slewing and scheduling noise.
JUMP_TOLERANCE = 2.0


class WallClockWatch:
    """Notices jumps of ``wall`` against ``monotonic`` (both injectable for tests)."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        tolerance: float = JUMP_TOLERANCE,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._tolerance = tolerance
        self._skew = self._now_skew()

    def _now_skew(self) -> float:
        return self._wall() - self._monotonic()

    def jumped(self) -> float:
        """Seconds the wall clock jumped since the last :meth:`settle` (or the start):
        negative when it went back, 0.0 when it did not jump beyond the tolerance. The
        jump stays reported until the caller has moved its times and settles."""
        shift = self._now_skew() - self._skew
        return shift if abs(shift) >= self._tolerance else 0.0

    def settle(self, shift: float) -> None:
        """The caller moved its times by ``shift`` (what :meth:`jumped` said)."""
        self._skew += shift
