"""Every retry policy of the uplink, declared in one place.

A policy is a small frozen value (:class:`RetryPolicy`) that says which errors it retries
and how long to wait after the n-th failure. The wait is one pure function,
:func:`next_delay`, used in two ways that must agree:

- in memory, by tenacity: :func:`retrying` builds an ``AsyncRetrying`` around a call
  and sleeps between attempts, logging one line per sleep (the take-off poller's
  takeOffNumbers calls and its account probes); the numbers loop, which must also wake
  for a new list while it waits, keeps its retry time itself with :func:`next_delay`;
- by the outbox pump, on the monotonic clock: the link's one probe while it is down
  (``link_probe``), the account probe (``account_probe``), the store probe
  (``store_probe``);
- persisted, by the outbox, only for answers about one message (NO_NUMBER after a resync
  that did not help): its attempt count and next attempt time, computed with
  :func:`next_attempt_at`, so that a restart resumes that schedule. A link fault is never
  persisted per message (docs/uplink.md, "Link health").

The jitter is "equal jitter": after the n-th failure the wait is drawn uniformly from the
upper ``jitter`` fraction of the window ``min(cap, initial * growth**(n-1))``. Many sites
coming back after the same outage then spread out, yet every wait still grows with the
window (full jitter can draw ~0 s again and again). A server's Retry-After (429/503) is
honoured when it asks for longer than the policy would wait, up to a sanity limit so that
a broken header cannot park the uplink for days.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
)
from tenacity.wait import wait_base

from agent.errors import UplinkAccountError, UplinkTransient

log = logging.getLogger("simedge.uplink")

#: Beyond this many doublings the window is at its cap anyway; stops float overflow.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class RetryPolicy:
    """How one kind of uplink work is retried.

    ``initial`` is the first window in seconds, ``growth`` how it multiplies per failure
    (1 = a fixed interval), ``cap`` its ceiling; ``jitter`` the random fraction of the
    window (0 = exact, 1 = anywhere from 0 to the window). ``max_attempts`` ``None`` means
    retry until cancelled: the backlog waits in SQLite, nothing is dropped.
    ``retry_after_limit`` bounds how long a server's Retry-After may make us wait.
    """

    name: str
    retry_on: tuple[type[BaseException], ...]
    initial: float
    cap: float
    growth: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None
    retry_after_limit: float = 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise ValueError(f"policy {self.name}: need 0 < initial <= cap, got {self}")
        if self.growth < 1:
            raise ValueError(f"policy {self.name}: growth {self.growth} < 1 would shrink")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"policy {self.name}: jitter {self.jitter} not within 0..1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"policy {self.name}: max_attempts {self.max_attempts} < 1")


def transient_backoff(
    *,
    initial: float = 1.0,
    cap: float = 300.0,
    growth: float = 2.0,
    jitter: float = 0.5,
    max_attempts: int | None = None,
) -> RetryPolicy:
    """The flaky link (network, timeouts, 5xx, 429): exponential backoff with jitter.

    Retries only ``UplinkTransient``; a rejection, an account error or NO_NUMBER goes
    straight to the caller, which has its own remedy for each.
    """
    return RetryPolicy(
        name="transient_backoff",
        retry_on=(UplinkTransient,),
        initial=initial,
        cap=cap,
        growth=growth,
        jitter=jitter,
        max_attempts=max_attempts,
    )


def link_probe(*, initial: float = 1.0, cap: float = 30.0, jitter: float = 0.5) -> RetryPolicy:
    """While the link is down: the outbox's one scheduled probe (docs/uplink.md), and the
    per-message retry after a NO_NUMBER that a new numbers list did not cure.

    The transient back-off's shape with a 30 s ceiling instead of 300 s: a code that came
    during the outage waits in the outbox for this probe when no newer SMS arrives to probe
    at once, and a buyer's code must not wait five minutes after the link is back. One
    request per 30 s at worst is nothing to OnlineSim; the jitter still spreads many
    sites coming back from the same outage.
    """
    return RetryPolicy(
        name="link_probe",
        retry_on=(UplinkTransient,),
        initial=initial,
        cap=cap,
        jitter=jitter,
    )


def account_probe(*, interval: float = 300.0, jitter: float = 0.1) -> RetryPolicy:
    """While paused by 401/403/405: probe slowly until a person has fixed the account.

    A fixed interval (every 5 minutes by default) rather than a growing one: the fix can
    come at any moment and should be noticed within one interval. Transient failures
    during the pause are probed at the same pace.
    """
    return RetryPolicy(
        name="account_probe",
        retry_on=(UplinkAccountError, UplinkTransient),
        initial=interval,
        cap=interval,
        growth=1.0,
        jitter=jitter,
    )


def store_probe(*, initial: float = 1.0, cap: float = 30.0) -> RetryPolicy:
    """While the store cannot write (full, read-only, I/O error): how often the pump tries
    a small write to see whether it can send again. Short: space freed by a person should
    put the uplink back to work within seconds. Retries nothing by itself (``retry_on`` is
    empty): the pump drives it with :func:`next_delay`."""
    return RetryPolicy(name="store_probe", retry_on=(), initial=initial, cap=cap, jitter=0.2)


def next_delay(
    attempt: int,
    policy: RetryPolicy,
    *,
    error: BaseException | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after the ``attempt``-th consecutive failure (1 = the first).

    Pure but for the random draw, which ``rng`` makes reproducible. ``error`` is the
    failure just seen: its ``retry_after`` (a 429's Retry-After) wins when it is longer.
    """
    if attempt < 1:
        raise ValueError(f"policy {policy.name}: attempt {attempt} < 1; attempts count from 1")
    exponent = min(attempt - 1, _MAX_EXPONENT)
    window = min(policy.cap, policy.initial * policy.growth**exponent)
    draw = (rng or random).random()
    delay = window * (1.0 - policy.jitter * draw)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None and retry_after > delay:
        delay = min(float(retry_after), max(delay, policy.retry_after_limit))
    return delay


def next_attempt_at(
    attempt: int,
    policy: RetryPolicy,
    *,
    now: float,
    error: BaseException | None = None,
    rng: random.Random | None = None,
) -> float:
    """The unix time of the next attempt after the ``attempt``-th failure at ``now``.

    What the outbox stores per message beside ``attempt``, to resume after a restart.
    """
    return now + next_delay(attempt, policy, error=error, rng=rng)


class PolicyWait(wait_base):
    """tenacity's view of a :class:`RetryPolicy`: the same :func:`next_delay`."""

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        return next_delay(retry_state.attempt_number, self.policy, error=error, rng=self.rng)


def retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[BaseException], object] | None = None,
) -> AsyncRetrying:
    """An ``AsyncRetrying`` that follows ``policy``, re-raising the last error when it stops.

    ``sleep`` is tenacity's hook: tests pass a recorder that does not sleep. ``on_retry``
    sees each failure that will be retried (the uplink state records it). Use it as
    ``await retrying(policy)(client.take_off_numbers, sum_rub=50, since=None)`` or as
    ``async for attempt in retrying(policy): with attempt: ...``.
    """
    return AsyncRetrying(
        retry=retry_if_exception_type(policy.retry_on),
        wait=PolicyWait(policy, rng),
        stop=stop_never if policy.max_attempts is None else stop_after_attempt(policy.max_attempts),
        reraise=True,
        sleep=sleep,
        before_sleep=_log_sleep(policy, on_retry),
    )


def _log_sleep(
    policy: RetryPolicy, on_retry: Callable[[BaseException], object] | None
) -> Callable[[RetryCallState], None]:
    def before_sleep(retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if on_retry is not None and error is not None:
            on_retry(error)
        delay = retry_state.upcoming_sleep
        # Our errors' messages never contain the API key (see agent.uplink.client).
        log.warning(
            "%s: attempt %d failed (%s: %s); retrying in %.1f s",
            policy.name,
            retry_state.attempt_number,
            type(error).__name__,
            error,
            delay,
        )

    return before_sleep
