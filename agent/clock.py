"""Jumps of the wall clock, seen against the monotonic one.

The agent waits only on the monotonic clock; the wall clock goes into records. A few
records are read back as times to wait for (a message's persisted retry time, the
arrival of a long SMS's first part): when the wall clock jumps (a Pi has no RTC; NTP
sets it right late, by an hour or a year), those must move with it, or a wait would
grow or shrink by the jump. :class:`WallClockWatch` says by how much it jumped since the
last settled look (docs/uplink.md, "Clocks").

The agent's periodic timers land on *beats*, multiples of :data:`BEAT` seconds of the
event loop's monotonic clock (:func:`on_the_beat`, :func:`next_beat`), so that at rest
they share the loop's wake-ups instead of waking it each on its own.

:func:`kernel_clock_synchronized` asks the kernel whether NTP (systemd-timesyncd, chrony)
has the clock in hand: a Pi without an RTC and without NTP stamps every record wrong, and
the fleet alerts on it (docs/metrics.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import time
from collections.abc import Callable

#: A wall clock that moved this much more (or less) than the monotonic one jumped;
#: below it, NTP's slewing and scheduling noise.
JUMP_TOLERANCE = 2.0

BEAT = 0.5
"""Seconds between the beats that an idle agent's timers share (the hot-plug watcher
looks on every beat, each modem's health check falls on one). A wake-up of the event
loop costs the whole process's CPU a fixed price, in the kernel and in the loop, whatever
it then does: on the 2-core VM of bench/RESULTS.md a bare epoll wake-up costs 30 to
100 µs and asyncio's round around it more, which for an idle agent of 64 modems, woken
about eight times a second, was most of its CPU (issue 19). Timers that fall on the same
beat fire in one round of the loop."""


def on_the_beat(now: float, delay: float) -> float:
    """When a timer ``delay`` seconds after ``now`` (loop time) should fire: on the last
    beat at or before ``now + delay``, so it costs no wake-up of its own; exactly then
    when that beat would take away more than a beat's worth of a delay shorter than two
    beats (a test's short interval stays what it says)."""
    when = now + delay
    if delay < 2 * BEAT:
        return when
    return math.floor(when / BEAT) * BEAT


def next_beat(now: float, every: float = BEAT) -> float:
    """The first multiple of ``every`` seconds after ``now`` (loop time)."""
    return (math.floor(now / every) + 1) * every


# adjtimex(2) with modes 0 only reads. Its answer is the clock state; TIME_ERROR means the
# kernel's "unsynchronised" flag is set: no time daemon has disciplined the clock lately
# (the same read as timedatectl's NTPSynchronized). The struct timex is about 208 bytes on
# 64-bit Linux; the buffer is larger so that no libc's layout can overrun it.
_TIME_ERROR = 5
_TIMEX_BUFFER = 512


@functools.cache
def _adjtimex() -> Callable[[ctypes.Array[ctypes.c_char]], int] | None:
    # Looked up once: find_library runs ldconfig, too slow for every scrape.
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name, use_errno=True), "adjtimex", None)


def kernel_clock_synchronized() -> bool | None:
    """True while the kernel says NTP keeps the clock, False when it says it does not,
    None where it cannot be asked (no adjtimex: not Linux)."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    state = adjtimex(ctypes.create_string_buffer(_TIMEX_BUFFER))
    if state < 0:
        return None
    return state != _TIME_ERROR


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
