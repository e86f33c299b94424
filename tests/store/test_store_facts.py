"""The uplink's state kept as a site fact: written at once when it says something new,
at most once a minute for successes alone, and carried into the next run."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.status import FACT_UPLINK, UplinkCondition, UplinkStatus
from agent.store import Store, queries
from agent.store.facts import UplinkRecorder, read_fact

PAUSED = UplinkStatus(
    state=UplinkCondition.PAUSED,
    code="ERROR_WRONG_KEY",
    since=100.0,
    last_error="401: ERROR_WRONG_KEY",
    last_error_at=100.0,
)


def success(at: float) -> UplinkStatus:
    """The uplink after a success, as UplinkTracker makes it: ok, the last error kept."""
    return replace(PAUSED, state=UplinkCondition.OK, code=None, since=200.0, last_success_at=at)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_of_successes_is_one_write_per_interval(store: Store) -> None:
    writes: list[dict[str, Any]] = []

    async def write(value: dict[str, Any]) -> None:
        writes.append(value)
        await store.record_fact(FACT_UPLINK, value)

    clock = Clock()
    recorder = UplinkRecorder(write, interval=60.0, clock=clock)
    recorder.update(PAUSED)
    await recorder.written()
    assert len(writes) == 1  # news: at once

    for n in range(1000):  # a backlog drained: each success moves last_success_at only
        recorder.update(success(200.0 + n))
    await recorder.written()
    assert len(writes) <= 3, len(writes)
    planned_before = len(writes)
    for n in range(1000):
        recorder.update(success(2000.0 + n))
    assert len(writes) == planned_before, "a success alone was written before its interval"
    clock.now += 61
    await recorder.written()
    assert writes[-1]["last_success_at"] == 2999.0
    await recorder.flush()
    stored = await store.read(lambda: read_fact(FACT_UPLINK))
    assert stored is not None
    assert stored["last_success_at"] == 2999.0
    # The last error survives the successes: it is still the real last error.
    assert stored["last_error"] == "401: ERROR_WRONG_KEY"


async def test_the_last_error_of_an_earlier_run_is_kept_after_a_restart(
    db_path: Path,
) -> None:
    store = await Store.open(db_path)
    try:
        first = UplinkRecorder(lambda value: store.record_fact(FACT_UPLINK, value))
        first.update(PAUSED)
        await first.flush()
        earlier = await store.read(lambda: read_fact(FACT_UPLINK))
        # The next run starts "ok" with no error in memory, and succeeds once.
        second = UplinkRecorder(lambda value: store.record_fact(FACT_UPLINK, value), earlier)
        now_ok = UplinkStatus(since=300.0, last_success_at=300.0)
        assert second.status(now_ok).last_error == "401: ERROR_WRONG_KEY"
        assert second.status(now_ok).last_error_at == 100.0
        second.update(now_ok)
        await second.flush()
    finally:
        await store.close()
    with queries.reading(db_path):  # as simedge status and the dashboard read it
        recorded = queries.recorded_uplink()
    assert recorded is not None
    assert recorded.state is UplinkCondition.OK
    assert recorded.last_error == "401: ERROR_WRONG_KEY"
    assert recorded.last_success_at == 300.0


async def test_a_failed_write_waits_the_interval_before_the_next(store: Store) -> None:
    attempts: list[float] = []
    clock = Clock()

    async def failing(_value: dict[str, Any]) -> None:
        attempts.append(clock.now)
        raise OSError("disk full")

    recorder = UplinkRecorder(failing, interval=60.0, clock=clock)
    recorder.update(PAUSED)
    await recorder.written()
    for n in range(100):
        recorder.update(replace(PAUSED, last_error_at=101.0 + n))
        await asyncio.sleep(0)  # one turn of the loop: a write planned for now would start
    assert attempts == [1000.0], "a failing store was written to in a loop"
    await recorder.flush()
