"""The retry policies: the pure wait function, and tenacity driving a failing call.

Waits are never slept: ``retrying(..., sleep=recorder)`` records what would be slept.
"""

from __future__ import annotations

import logging
import random

import pytest

from agent.errors import UplinkAccountError, UplinkNoNumber, UplinkRejected, UplinkTransient
from agent.uplink.policy import (
    RetryPolicy,
    account_probe,
    link_probe,
    next_attempt_at,
    next_delay,
    retrying,
    transient_backoff,
)


class SleepRecorder:
    """tenacity's ``sleep`` hook: remembers each requested wait, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class FailingCall:
    """An async call that raises the given errors in turn, then returns ``"done"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_windows_grow_to_the_cap_and_never_beyond() -> None:
    policy = transient_backoff(initial=1, cap=300, jitter=0.5)
    rng = random.Random(1234)
    for attempt in range(1, 200):
        window = min(300.0, 2.0 ** (attempt - 1))
        for _ in range(20):
            delay = next_delay(attempt, policy, rng=rng)
            assert window / 2 <= delay <= window <= 300


def test_jitter_spreads_sites_and_a_seed_reproduces_it() -> None:
    policy = transient_backoff(initial=1, cap=300)
    first = [next_delay(9, policy, rng=random.Random(seed)) for seed in range(50)]
    again = [next_delay(9, policy, rng=random.Random(seed)) for seed in range(50)]
    assert first == again
    assert len(set(first)) == 50
    assert min(first) >= 128
    assert max(first) <= 256


def test_no_jitter_is_exact_and_huge_attempt_counts_do_not_overflow() -> None:
    policy = transient_backoff(initial=2, cap=60, jitter=0)
    assert [next_delay(n, policy) for n in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 32, 60]
    assert next_delay(10_000_000, policy) == 60


def test_account_probe_is_a_slow_fixed_interval() -> None:
    policy = account_probe(interval=300, jitter=0.1)
    rng = random.Random(7)
    delays = [next_delay(n, policy, rng=rng) for n in range(1, 50)]
    assert all(270 <= delay <= 300 for delay in delays)


def test_retry_after_is_honoured_when_longer_and_bounded() -> None:
    policy = transient_backoff(initial=1, cap=300, jitter=0)
    busy = UplinkTransient("429", code="HTTP_429", status=429, retry_after=42)
    assert next_delay(1, policy, error=busy) == 42
    # A shorter Retry-After does not shorten our own backoff.
    assert next_delay(8, policy, error=busy) == 128
    absurd = UplinkTransient("429", code="HTTP_429", status=429, retry_after=10**9)
    assert next_delay(1, policy, error=absurd) == policy.retry_after_limit


def test_next_attempt_at_is_now_plus_the_same_delay() -> None:
    policy = transient_backoff(initial=1, cap=300)
    when = next_attempt_at(5, policy, now=1_700_000_000, rng=random.Random(3))
    assert when == 1_700_000_000 + next_delay(5, policy, rng=random.Random(3))


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"initial": 0, "cap": 1}, "initial"),
        ({"initial": 5, "cap": 1}, "initial"),
        ({"initial": 1, "cap": 5, "growth": 0.5}, "growth"),
        ({"initial": 1, "cap": 5, "jitter": 1.5}, "jitter"),
        ({"initial": 1, "cap": 5, "max_attempts": 0}, "max_attempts"),
    ],
)
def test_nonsense_policies_are_refused_by_name(arguments: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        RetryPolicy(name="bad", retry_on=(UplinkTransient,), **arguments)
    assert "bad" in str(caught.value)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="attempt 0"):
        next_delay(0, transient_backoff())


async def test_transient_errors_are_retried_until_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = FailingCall(
        UplinkTransient("takeOffNumbers: ConnectError", code="ConnectError"),
        UplinkTransient("takeOffNumbers: HTTP 502", code="HTTP_502", status=502),
        UplinkTransient("takeOffNumbers: HTTP 429", code="HTTP_429", status=429, retry_after=9),
    )
    sleep = SleepRecorder()
    policy = transient_backoff(initial=1, cap=300, jitter=0)
    with caplog.at_level(logging.WARNING, logger="simedge.uplink"):
        assert await retrying(policy, sleep=sleep)(call) == "done"
    assert call.calls == 4
    assert sleep.delays == [1, 2, 9]
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert (
        "transient_backoff: attempt 3 failed (UplinkTransient: takeOffNumbers: HTTP 429)"
        in (lines[2])
    )
    assert lines[2].endswith("retrying in 9.0 s")


@pytest.mark.parametrize(
    "error",
    [
        UplinkRejected("addMessage: HTTP 400 ERROR_PARAMS", code="ERROR_PARAMS", status=400),
        UplinkAccountError("addMessage: HTTP 401 ERROR_WRONG_KEY", code="ERROR_WRONG_KEY"),
        UplinkNoNumber("addMessage: HTTP 400 NO_NUMBER", code="NO_NUMBER", status=400),
    ],
)
async def test_final_errors_are_not_retried(error: Exception) -> None:
    call = FailingCall(error)
    sleep = SleepRecorder()
    with pytest.raises(type(error)) as caught:
        await retrying(transient_backoff(), sleep=sleep)(call)
    assert caught.value is error
    assert call.calls == 1
    assert sleep.delays == []


async def test_max_attempts_reraises_the_last_transient_error() -> None:
    errors = [UplinkTransient(f"down {n}", code="ConnectError") for n in range(5)]
    call = FailingCall(*errors)
    sleep = SleepRecorder()
    with pytest.raises(UplinkTransient) as caught:
        await retrying(transient_backoff(max_attempts=3), sleep=sleep)(call)
    assert caught.value is errors[2]
    assert call.calls == 3
    assert len(sleep.delays) == 2


async def test_account_probe_keeps_probing_through_account_and_link_errors() -> None:
    call = FailingCall(
        UplinkAccountError("HTTP 403 ACCOUNT_BLOCKED", code="ACCOUNT_BLOCKED", status=403),
        UplinkTransient("ConnectError", code="ConnectError"),
        UplinkAccountError("HTTP 401 ERROR_WRONG_KEY", code="ERROR_WRONG_KEY", status=401),
    )
    sleep = SleepRecorder()
    result = await retrying(account_probe(interval=300, jitter=0), sleep=sleep)(call)
    assert result == "done"
    assert sleep.delays == [300, 300, 300]


def test_the_link_probe_never_waits_longer_than_30_s_after_any_number_of_failures() -> None:
    # A code stored during an outage, with no newer SMS to probe for it, waits for this
    # probe once the link is back (docs/uplink.md): never minutes.
    policy = link_probe()
    rng = random.Random(7)
    waits = [next_delay(attempt, policy, rng=rng) for attempt in range(1, 200)]
    assert max(waits) <= 30.0
    assert waits[0] <= 1.0
    assert max(waits[10:]) >= 15.0  # it still backs off
