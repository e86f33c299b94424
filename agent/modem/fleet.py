"""The fleet: one worker per physical modem, started and stopped as the hub changes.


:class:`Fleet` follows the hot-plug watcher. A group of ports that appears is probed for
its AT port and gets a :class:`~agent.modem.worker.ModemWorker` (one per modem its AT ports
name by IMEI: a multi-UART chip the table does not know carries several, see
:func:`~agent.modem.discovery.split_by_identity`); a group that vanishes has
its worker stopped and its slot shown as gone (its SIM leaves the online list at once). A
group with no AT port yet (a modem still booting answers nothing for a while) is probed
again on a back-off, so it joins as soon as it speaks.

The fleet also keeps what the rest of the agent sees of the modems: the latest
:class:`~agent.status.ModemStatus` of every slot, written to the store when a modem's or
a SIM's identity changes, with a line in the site's log for every change of state or
fault, and handed to ``on_change`` for the numbers list, the dashboard and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from agent.clock import next_beat
from agent.errors import ControlError, StoreError, StoreNotWritable
from agent.logs import get_logger
from agent.modem.calls import CallSettings
from agent.modem.discovery import PortGroup, probe_group, split_by_identity
from agent.modem.hotplug import Change, PortWatcher
from agent.modem.own_number import NumberBook, UssdRecipe
from agent.modem.upkeep import SimUpkeep
from agent.modem.worker import ModemWorker, WorkerCommand, WorkerSettings
from agent.status import ModemState, ModemStatus
from agent.store import Store

log = get_logger("modem.fleet")


@dataclass(frozen=True)
class ReprobeBackoff:
    """Waits between probes of a modem that has no AT port yet: quick at first (modems
    boot in seconds to a minute), then rarely, forever (it may be a dead interface)."""

    initial: float = 2.0
    growth: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.initial * self.growth ** min(attempt, 16))


class Fleet:
    def __init__(
        self,
        *,
        watcher: PortWatcher,
        store: Store,
        settings: WorkerSettings,
        number_book: NumberBook,
        ussd_recipes: Mapping[str, UssdRecipe],
        upkeep: SimUpkeep | None = None,
        on_change: Callable[[ModemStatus], None] = lambda status: None,
        reprobe: ReprobeBackoff | None = None,
        probe_timeout: float = 0.5,
        call_settings: CallSettings | None = None,
    ) -> None:
        self.watcher = watcher
        self.store = store
        self.settings = settings
        self.number_book = number_book
        self.ussd_recipes = ussd_recipes
        self.upkeep = upkeep
        self.on_change = on_change
        self.reprobe = reprobe or ReprobeBackoff()
        self.probe_timeout = probe_timeout
        self.call_settings = call_settings or CallSettings()
        self.statuses: dict[str, ModemStatus] = {}
        self._workers: dict[str, ModemWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by group key
        self._keys: dict[str, str] = {}  # slot -> group key
        self._slots: dict[str, tuple[str, ...]] = {}  # group key -> slots of its modems
        self._wake = asyncio.Event()  # look at the ports now, not at the next interval
        self._rescan_asked = False
        self._probe_now: dict[str, asyncio.Event] = {}  # slot -> "probe again now"
        self._background: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None  # a worker's error no one handled

    # -- what the rest of the agent asks ---------------------------------------------------

    def modems(self) -> list[ModemStatus]:
        """Every slot seen, in physical order."""
        return [self.statuses[slot] for slot in sorted(self.statuses, key=_slot_order)]

    def command(self, slot: str, command: WorkerCommand) -> None:
        worker = self._workers.get(slot)
        if worker is None:
            raise ControlError(f"no running modem in slot {slot}")
        worker.send(command)

    def worker(self, slot: str) -> ModemWorker | None:
        """The running worker of ``slot`` (to run work on its port in its turn)."""
        return self._workers.get(slot)

    def rescan(self) -> None:
        """Look at the ports now and probe again every modem that has no AT port yet."""
        self._rescan_asked = True
        self._wake.set()

    # -- life -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the hub until cancelled; every worker is stopped on the way out. A worker
        that fails with an error it does not handle (a damaged store) ends this with it,
        so that the supervisor stops the agent and says why."""
        stop_listening = self.store.on_writable_change(self._store_writable_changed)
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._failure is not None:
                    raise self._failure
                for event in await self.watcher.look():
                    if event.change is Change.REMOVED:
                        await self._remove(event.group)
                    else:
                        self._add(event.group)
                # A plain timer on an event, not asyncio.timeout (a cancellation and two
                # exceptions each time): an idle site comes here twice a second (issue 19).
                # On the beat, which the modems' health checks share (agent.clock).
                next_look = loop.call_at(
                    next_beat(loop.time(), self.watcher.interval), self._wake.set
                )
                try:
                    await self._wake.wait()
                finally:
                    next_look.cancel()
                self._wake.clear()
                if self._rescan_asked:
                    self._rescan_asked = False
                    self._wake_probes()
        finally:
            stop_listening()
            tasks = list(self._tasks.values()) + list(self._background)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _store_writable_changed(self, error: StoreNotWritable | None) -> None:
        if error is None:  # SMS kept on the modems while it could not write go in now
            for worker in list(self._workers.values()):
                worker.store_writable_again()

    def _add(self, group: PortGroup) -> None:
        old = self._tasks.pop(group.key, None)
        if old is not None:
            old.cancel()  # a replug faster than the worker noticed its port go
        self._keys[group.slot] = group.key
        self._publish(
            ModemStatus(
                slot=group.slot, label=group.label, ports=tuple(p.device for p in group.ports)
            )
        )
        task = asyncio.create_task(self._serve(group, old), name=f"modem {group.slot}")
        task.add_done_callback(self._served)
        self._tasks[group.key] = task

    def _served(self, task: asyncio.Task[None]) -> None:
        """A device's task ended. Its error would otherwise wait unseen until the agent
        stops, with every modem of the device ended by it (one task group) and shown as
        they were: it is handed to run(), which raises it."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        while isinstance(error, BaseExceptionGroup):  # the device's task group: the cause
            error = error.exceptions[0]
        if self._failure is None:
            self._failure = error
        self._wake.set()

    async def _remove(self, group: PortGroup) -> None:
        task = self._tasks.pop(group.key, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for slot in self._slots.pop(group.key, (group.slot,)):
            self._workers.pop(slot, None)
            previous = self.statuses.get(slot, ModemStatus(slot=slot))
            self._publish(
                ModemStatus(
                    slot=slot,
                    label=previous.label,
                    ports=previous.ports,
                    state=ModemState.GONE,
                    fault="unplugged",
                    imei=previous.imei,
                    model=previous.model,
                    iccid=previous.iccid,
                )
            )

    def _wake_probes(self) -> None:
        for wake in self._probe_now.values():
            wake.set()

    async def _serve(self, group: PortGroup, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        at_group = await self._find_at_port(group)
        modems = await split_by_identity(
            at_group,
            baudrate=self.settings.baudrate,
            answer_within=self.probe_timeout,
            labels=self.watcher.labels,
        )
        self._slots[group.key] = tuple(modem.slot for modem in modems)
        async with asyncio.TaskGroup() as modems_of_the_device:
            for modem in modems:
                modems_of_the_device.create_task(self._work(modem), name=f"modem {modem.slot}")

    async def _work(self, group: PortGroup) -> None:
        """One worker on ``group``'s AT port, registered under its slot while it runs."""
        if group.slot not in self.statuses:  # a modem found behind another's USB device
            self._publish(
                ModemStatus(
                    slot=group.slot, label=group.label, ports=tuple(p.device for p in group.ports)
                )
            )
        held_in_a_row = 0

        def publish(status: ModemStatus) -> None:
            nonlocal held_in_a_row
            if status.state is ModemState.READY:
                held_in_a_row = 0  # served: the next taking starts the back-off afresh
            self._publish(status)

        while True:
            worker = ModemWorker(
                group.at_port.device,  # type: ignore[union-attr]  # _find_at_port ensures it
                slot=group.slot,
                sink=self.store,
                on_status=publish,
                settings=self.settings,
                number_book=self.number_book,
                ussd_recipes=self.ussd_recipes,
                upkeep=self.upkeep,
                label=group.label,
                usb_path=group.key,
                call_recorder=self.store,
                call_settings=self.call_settings,
            )
            self._workers[group.slot] = worker
            try:
                ended = await worker.run()
            finally:
                if self._workers.get(group.slot) is worker:
                    del self._workers[group.slot]
            if ended.state is not ModemState.PROBING:
                return  # gone: the watcher brings it back when it is plugged in again
            # Its port was taken by another program. The group is probed already (and a
            # port the device table names is never opened by a probe), so probing it again
            # would answer at once and start the next worker on the held port straight
            # away, again and again: the next worker's open is the probe, on the back-off.
            await self._wait_to_probe(group.slot, held_in_a_row)
            held_in_a_row += 1

    async def _find_at_port(self, group: PortGroup) -> PortGroup:
        attempt = 0
        while True:
            probed = await probe_group(
                group, baudrate=self.settings.baudrate, answer_within=self.probe_timeout
            )
            if probed.at_port is not None:
                return probed
            why = "; ".join(f"{p.device}: {p.why or p.role}" for p in probed.ports)
            delay = self.reprobe.delay(attempt)
            log.info("%s: no AT port yet (%s); probing again in %.0f s", group.slot, why, delay)
            self._publish(
                ModemStatus(
                    slot=group.slot,
                    label=group.label,
                    ports=tuple(p.device for p in group.ports),
                    state=ModemState.PROBING,
                    fault=f"no AT port: {why}",
                )
            )
            await self._wait_to_probe(group.slot, attempt)
            attempt += 1

    async def _wait_to_probe(self, slot: str, attempt: int) -> None:
        """The re-probe back-off of ``slot``'s ``attempt``-th try, cut short by a rescan."""
        wake = self._probe_now.setdefault(slot, asyncio.Event())
        wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.reprobe.delay(attempt)):
                await wake.wait()

    # -- status ----------------------------------------------------------------------------

    def _publish(self, status: ModemStatus) -> None:
        previous = self.statuses.get(status.slot)
        self.statuses[status.slot] = status
        if previous is None or (previous.state, previous.fault) != (status.state, status.fault):
            self._log_change(previous, status)
        if previous is None or _identity(previous) != _identity(status):
            self._remember(status)
        self.on_change(status)

    def _log_change(self, previous: ModemStatus | None, status: ModemStatus) -> None:
        words = f"{status.state}" + (f": {status.fault}" if status.fault else "")
        level = {
            ModemState.FAILED: "alarm",
            ModemState.RECOVERING: "warning",
            ModemState.GONE: "warning",
        }.get(status.state, "info")
        if previous is None or previous.state is not status.state or status.fault:
            self._spawn(
                self.store.log_event(
                    "modem", words, level=level, slot=status.slot, iccid=status.iccid
                )
            )

    def _remember(self, status: ModemStatus) -> None:
        if status.state is ModemState.GONE:
            return
        if status.imei or status.model:
            self._spawn(
                self.store.upsert_modem(
                    status.imei,
                    status.slot,
                    status.model,
                    manufacturer=status.manufacturer,
                    port=status.at_port,
                )
            )
        if status.iccid:
            self._spawn(
                self.store.upsert_sim(
                    status.iccid,
                    imsi=status.imsi,
                    operator=status.operator,
                    slot=status.slot,
                    imei=status.imei,
                )
            )

    def _spawn(self, write: Awaitable[object]) -> None:
        """Run a store write without making the modem wait for it; failures are logged."""

        async def guarded() -> None:
            try:
                await write
            except StoreError as exc:
                log.warning("store write failed: %s", exc)

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _identity(status: ModemStatus) -> tuple[object, ...]:
    return (status.imei, status.model, status.iccid, status.imsi, status.operator)


@functools.cache  # a site has a few hundred slot names at most, and sorts them often
def _slot_order(slot: str) -> tuple[object, ...]:
    """Physical order: "1.1.10" after "1.1.9"."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in slot.replace("-", ".").split(".")
    )
