"""Own number by SMS between SIMs of the same site (docs/sims.md).

When neither ``+CNUM`` nor USSD gives a SIM's number and another SIM of the site has a
known number, the unknown SIM texts it a one-time token (agent.protocol.probe); when the
SMS arrives there, its sender is the unknown SIM's number (agent.store.probes matches it
and keeps it from the outbox). It costs an SMS, so :class:`NumberProber` probes only
within the ``[sims] probe_sms_per_day`` budget (0, the default, turns probing off), at
most once a day per SIM, and records every attempt first, whatever becomes of it.

The SMS goes through the modem's own worker (:meth:`ModemWorker.run_in_turn`), between
its other work, never while it reads an SMS: one owner task per port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from agent.errors import CommandFailed, CommandTimeout, PortGone, StoreNotWritable
from agent.logs import LogLimiter, get_logger
from agent.modem.sending import SEND_TIMEOUT, failure_reason, send_sms
from agent.modem.worker import ModemWorker, WorkerCommand
from agent.protocol.probe import new_token, probe_text
from agent.status import ModemState, ModemStatus, NumberSource, SimState

if TYPE_CHECKING:
    from agent.store import Store

log = get_logger("modem.probe")

TURN_WITHIN = 120.0
"""Seconds a probe waits for its modem's worker to take it (a modem in recovery takes
nothing); past that the probe fails and its SMS is never sent."""
ONE_DAY = timedelta(days=1)
MAX_PROBES_AT_ONCE = 8


@dataclass(frozen=True)
class ProbeSettings:
    """``[sims]``: ``per_day`` SMS the site may spend on probes a day (0: none);
    ``timeout`` seconds to wait for a probe to arrive before it counts as failed;
    ``interval`` seconds between two looks for SIMs to probe (a modem change looks now)."""

    per_day: int = 0
    timeout: float = 600.0
    interval: float = 60.0


class Workers(Protocol):
    """What the prober needs of the fleet."""

    def modems(self) -> list[ModemStatus]: ...

    def worker(self, slot: str) -> ModemWorker | None: ...


def _can_send(status: ModemStatus) -> bool:
    return (
        status.state is ModemState.READY
        and status.sim_state is SimState.READY
        and status.registered is True
        and status.iccid is not None
    )


def needs_probe(status: ModemStatus) -> bool:
    """A SIM that is up and whose number nothing else found."""
    return _can_send(status) and not status.number and status.number_source is NumberSource.UNKNOWN


def can_receive_probe(status: ModemStatus) -> bool:
    return _can_send(status) and bool(status.number) and str(status.number).startswith("+")


class NumberProber:
    """Plans and sends number probes for the whole site; ``run()`` it in a task."""

    def __init__(
        self,
        *,
        store: Store,
        workers: Workers,
        settings: ProbeSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._workers = workers
        self._settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._sending: dict[str, asyncio.Task[None]] = {}  # ICCID -> its probe being sent
        self._errors = LogLimiter(log)  # a store that stays unwritable: not a line per round
        self._planning = asyncio.Lock()  # one round at a time: each reads what the last began
        store.on_number_found(self._number_found)

    def _number_found(self, iccid: str) -> None:
        """A probe's SMS arrived: the probing SIM's worker reads its number again (from the
        store), so that its status, and the numbers list, carry it."""
        for status in self._workers.modems():
            worker = self._workers.worker(status.slot) if status.iccid == iccid else None
            if worker is not None:
                worker.send(WorkerCommand.RELOAD_NUMBER)

    def wake(self) -> None:
        """Look again now (a modem changed: a number may be unknown, or newly known)."""
        self._wake.set()

    async def wait_sent(self) -> None:
        """Wait until every probe being sent has its outcome recorded (sent or failed)."""
        while self._sending:
            await asyncio.gather(*self._sending.values(), return_exceptions=True)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.round()
                except StoreNotWritable as exc:
                    # Full, read-only, I/O error: no probe is started that could not be
                    # recorded (an SMS costs money); the next round tries again.
                    self._errors.warning(
                        "rounds put off", "store", "number probes wait for the store: %s", exc
                    )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.interval):
                        await self._wake.wait()
        finally:
            tasks = list(self._sending.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def round(self) -> list[str]:
        """Fail the probes that never arrived, then start the ones the budget allows; the
        ICCIDs of the SIMs probed now."""
        async with self._planning:
            return await self._round()

    async def _round(self) -> list[str]:
        now = self._clock()
        await self._store.expire_probes(now, self._settings.timeout)
        if self._settings.per_day <= 0:
            return []
        statuses = self._workers.modems()
        targets = [status for status in statuses if can_receive_probe(status)]
        waiting = [
            status
            for status in statuses
            if needs_probe(status) and status.iccid not in self._sending
        ]
        if not targets or not waiting:
            return []
        attempts = await self._store.probe_attempts_since(now - ONE_DAY.total_seconds())
        budget = self._settings.per_day - sum(attempts.values())
        started = []
        for status in waiting:
            assert status.iccid is not None
            if budget <= 0 or len(self._sending) >= MAX_PROBES_AT_ONCE:
                break
            if attempts.get(status.iccid):
                continue  # one attempt a day per SIM
            target = targets[len(started) % len(targets)]  # spread over the known SIMs
            budget -= 1
            started.append(status.iccid)
            task = asyncio.create_task(self._probe(status, target), name=f"probe {status.slot}")
            self._sending[status.iccid] = task
            task.add_done_callback(lambda _task, iccid=status.iccid: self._sending.pop(iccid, None))
        return started

    async def _probe(self, status: ModemStatus, target: ModemStatus) -> None:
        assert status.iccid is not None
        assert target.iccid is not None
        assert target.number is not None
        token = new_token()
        probe_id = await self._store.start_probe(
            iccid=status.iccid,
            slot=status.slot,
            target_iccid=target.iccid,
            target_number=target.number,
            token=token,
            at=self._clock(),
        )
        worker = self._workers.worker(status.slot)
        if worker is None:
            await self._store.probe_failed(
                probe_id, "the modem went away before sending", self._clock()
            )
            return
        text, recipient = probe_text(token), target.number
        log.info("%s: probing for its number: SMS to %s (%s)", status.slot, recipient, target.slot)
        try:
            async with asyncio.timeout(TURN_WITHIN + SEND_TIMEOUT):
                reference = await worker.run_in_turn(
                    lambda session: send_sms(session, recipient, text)
                )
        except TimeoutError:
            reason = f"the modem did not take the SMS within {TURN_WITHIN:g} s (busy or recovering)"
            log.warning("%s: number probe #%d failed: %s", status.slot, probe_id, reason)
            await self._store.probe_failed(probe_id, reason, self._clock())
            return
        except (CommandFailed, CommandTimeout, PortGone) as exc:
            reason = failure_reason(exc)
            log.warning("%s: number probe #%d failed: %s", status.slot, probe_id, reason)
            await self._store.probe_failed(probe_id, reason, self._clock())
            return
        await self._store.probe_sent(probe_id, reference, self._clock())
