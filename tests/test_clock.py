"""The beats that an idle agent's timers share (agent.clock)."""

from __future__ import annotations

import pytest

from agent.clock import BEAT, next_beat, on_the_beat


@pytest.mark.parametrize("now", [0.0, 12.3, 1000.26, 86400.49])
@pytest.mark.parametrize("delay", [30.0, 27.4, 33.0, 2 * BEAT])
def test_a_long_timer_fires_on_the_last_beat_before_its_time(now: float, delay: float) -> None:
    when = on_the_beat(now, delay)
    assert when % BEAT == 0  # on a beat: timers due about then fire in one wake-up
    assert now + delay - BEAT < when <= now + delay  # never late, at most a beat early


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.5, 2 * BEAT - 0.001])
def test_a_short_timer_is_not_moved(delay: float) -> None:
    assert on_the_beat(12.3, delay) == 12.3 + delay  # a short interval stays what it says


@pytest.mark.parametrize("now", [0.0, 0.25, 0.5, 7.999, 1000.26])
def test_the_next_beat_is_the_first_multiple_after_now(now: float) -> None:
    beat = next_beat(now)
    assert beat % BEAT == 0
    assert now < beat <= now + BEAT
    assert next_beat(now, 2.0) % 2.0 == 0
    assert now < next_beat(now, 2.0) <= now + 2.0


def test_two_timers_set_at_different_moments_share_a_beat() -> None:
    # A modem's health check due at 130.2 s and the watcher's look after 129.7 s: one wake.
    assert on_the_beat(100.2, 30.0) == next_beat(129.7) == 130.0
