"""ModemWorker receiving SMS from emulated modems on real ptys into the real store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from agent.emulate.modems import Hub
from agent.errors import DiskFull
from agent.logs import LINES_PER_SOURCE, TRACE
from agent.modem.own_number import MemoryNumberBook, StoreNumberBook
from agent.modem.worker import HEALTH_LINE, ModemWorker, PduSink, WorkerCommand
from agent.protocol.commands import SignalQuality
from agent.status import ModemState, NumberSource, SimState
from agent.store import Store
from tests.modem.conftest import (
    FAST,
    RecordingSink,
    StartHub,
    StatusWatch,
    at_link,
    emulator_events,
    message_count,
    ready,
    running,
    settled,
    stored_on_modem,
)


@pytest.mark.parametrize("profile", ["sim800", "ec25", "huawei"])
async def test_each_profile_starts_identifies_and_takes_an_sms(
    start_hub: StartHub, store: Store, profile: str
) -> None:
    hub = await start_hub(profile=profile)
    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (worker, watch, _):
        status = await watch.until(ready)
        modem = hub.slots[0].modem
        assert modem.sim is not None
        assert status.iccid == modem.sim.iccid
        assert status.imsi == modem.sim.imsi
        assert status.imei == modem.imei
        assert status.operator == modem.sim.operator.mcc_mnc
        assert status.sim_state is SimState.READY
        assert status.number == modem.sim.msisdn
        assert status.number_source in (NumberSource.CNUM, NumberSource.USSD)
        assert status.registered
        hub.inject(0, "+79161234567", f"code 4711 from {profile}")
        (result,) = await sink.until(1)
        await settled(worker)
        assert result.message_id is not None
        assert sink.calls[0]["iccid"] == modem.sim.iccid
        assert sink.calls[0]["slot"] == hub.slots[0].usb_path
        assert stored_on_modem(hub, 0) == 0  # deleted after the store had it
        if profile == "ec25":
            assert modem.settings.cnmi[:2] == (2, 1)
        if profile == "huawei":
            assert modem.settings.curc == 0  # ^RSSI/^MODE noise off


async def test_sweep_on_start_takes_what_waited_on_the_sim(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(profile="sim800")
    hub.inject(0, "Bank", "one")
    hub.inject(0, "Bank", "two " * 60)  # two parts: kept apart, joined by the store
    await emulator_events(hub, "stored", 3)
    assert stored_on_modem(hub, 0) == 3
    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (worker, watch, _):
        await watch.until(ready)
        await sink.until(3)
        await settled(worker)
        assert stored_on_modem(hub, 0) == 0
        assert await message_count(store) == 2


async def test_sms_while_a_health_command_is_pending(start_hub: StartHub, store: Store) -> None:
    hub = await start_hub(profile="ec25", slow_delay=0.15)
    sink = RecordingSink(store)
    # Health checks back to back, each answer 0.15 s late: a health command is in flight
    # practically all the time, so +CMTI lands in the middle of one's response.
    settings = replace(FAST, health_interval=0.01, command_timeout=1.0)
    async with running(hub, 0, sink, settings=settings) as (worker, watch, _):
        await watch.until(ready)
        hub.fault(0, "slow")
        hub.inject(0, "+79161234567", "arrives mid-health")
        (result,) = await sink.until(1, within=10)
        assert result.message_id is not None
        await settled(worker)
        assert stored_on_modem(hub, 0) == 0
        # Health goes on: a check after the SMS sees the signal move (a check that finds
        # nothing changed publishes nothing).
        modem = hub.slots[0].modem
        modem.csq = 31 if modem.csq != 31 else 30
        moved = await watch.until(lambda s: s.signal_dbm == SignalQuality(modem.csq).dbm)
        assert moved.state is ModemState.READY


async def test_pool_with_shared_imeis_keeps_modems_apart(start_hub: StartHub, store: Store) -> None:
    hub = await start_hub(profile="pool", count=8)
    assert len({slot.modem.imei for slot in hub.slots}) == 1
    sink = RecordingSink(store)
    async with running_all(hub, sink, range(8)) as workers:
        for index in range(8):
            hub.inject(index, "+79160000000", f"to modem {index}")
        await sink.until(8)
        by_slot = {call["slot"]: call["iccid"] for call in sink.calls}
        assert by_slot == {
            slot.usb_path: slot.modem.sim.iccid for slot in hub.slots if slot.modem.sim
        }
        assert {w.status.imei for w in workers} == {hub.slots[0].modem.imei}


@asynccontextmanager
async def running_all(hub: Hub, sink: PduSink, indexes: range) -> AsyncIterator[list[ModemWorker]]:
    """Workers on several modems, all READY before the block starts."""
    watches = [StatusWatch() for _ in indexes]
    workers = [
        ModemWorker(
            at_link(hub, index),
            slot=hub.slots[index].usb_path,
            sink=sink,
            on_status=watches[n],
            settings=FAST,
        )
        for n, index in enumerate(indexes)
    ]
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        for watch in watches:
            await watch.until(ready)
        yield workers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_numbers_without_cnum_come_by_ussd_and_are_remembered(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(profile="mixed", count=6, seed=3)
    for slot in hub.slots:
        assert slot.modem.sim is not None
        slot.modem.sim.number_stored = False  # no +CNUM on any SIM
    book = StoreNumberBook(store)
    sink = RecordingSink(store)
    for index, slot in enumerate(hub.slots):
        async with running(hub, index, sink, number_book=book) as (_, watch, _):
            status = await watch.until(ready)
            assert slot.modem.sim is not None
            assert status.number == slot.modem.sim.msisdn, slot.profile.name
            assert status.number_source is NumberSource.USSD
    profiles = {slot.profile.name for slot in hub.slots}
    assert "huawei" in profiles  # its USSD request goes GSM 7-bit packed
    assert await book.sim_number(hub.slots[0].modem.sim.iccid) == (
        hub.slots[0].modem.sim.msisdn,
        NumberSource.USSD,
    )


async def test_a_manual_number_wins_and_refresh_keeps_it(start_hub: StartHub, store: Store) -> None:
    hub = await start_hub(profile="sim800")
    sim = hub.slots[0].modem.sim
    assert sim is not None
    book = MemoryNumberBook()
    book.numbers[sim.iccid] = ("+79990001122", NumberSource.MANUAL)
    async with running(hub, 0, RecordingSink(store), number_book=book) as (worker, watch, _):
        status = await watch.until(ready)
        assert (status.number, status.number_source) == ("+79990001122", NumberSource.MANUAL)
        worker.send(WorkerCommand.REFRESH_NUMBER)
        await asyncio.sleep(0)
        await settled(worker)
        assert worker.status.number == "+79990001122"


async def test_crash_between_commit_and_delete_reads_again_without_duplicate(
    start_hub: StartHub, tmp_path: Any
) -> None:
    hub = await start_hub(profile="sim800")
    path = tmp_path / "crash.db"
    store = await Store.open(path)
    sink = RecordingSink(store)

    def crash() -> None:
        raise asyncio.CancelledError  # the agent dies right after the commit, before CMGD

    sink.after_ingest = crash
    async with running(hub, 0, sink) as (_, watch, task):
        await watch.until(ready)
        hub.inject(0, "+79161234567", "your code is 1234")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 5)
        assert stored_on_modem(hub, 0) == 1  # still on the SIM
    await store.close()

    store = await Store.open(path)
    try:
        sink = RecordingSink(store)
        async with running(hub, 0, sink) as (worker, watch, _):
            await watch.until(ready)
            (again,) = await sink.until(1)
            await settled(worker)
            assert again.duplicate  # read again, not stored twice
            assert stored_on_modem(hub, 0) == 0
            assert await message_count(store) == 1
    finally:
        await store.close()


class FullDisk:
    """A sink whose disk is full until ``space`` is set; then the real store."""

    def __init__(self, store: Store) -> None:
        self.inner = RecordingSink(store)
        self.space = False
        self.refused = 0
        self.refusal = asyncio.Event()

    async def ingest_pdu(self, **fields: Any) -> Any:
        if not self.space:
            self.refused += 1
            self.refusal.set()
            raise DiskFull("/var/lib/simedge: no space left on device")
        return await self.inner.ingest_pdu(**fields)


async def test_disk_full_leaves_sms_on_the_sim_and_retries(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(profile="ec25")
    sink = FullDisk(store)
    async with running(hub, 0, sink) as (worker, watch, _):
        await watch.until(ready)
        hub.inject(0, "+79161234567", "kept while the disk is full")
        await asyncio.wait_for(sink.refusal.wait(), 5)
        status = await watch.until(lambda s: s.fault is not None and "disk full" in s.fault)
        assert status.state is ModemState.READY
        assert stored_on_modem(hub, 0) == 1  # never deleted without being stored
        sink.space = True
        await sink.inner.until(1)
        await settled(worker)
        await watch.until(lambda s: s.fault is None)
        assert stored_on_modem(hub, 0) == 0


async def test_a_disk_full_met_at_every_retry_is_logged_a_few_times(
    start_hub: StartHub, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="simedge.modem.worker")
    hub = await start_hub(profile="ec25")
    sink = FullDisk(store)
    async with running(hub, 0, sink) as (_, watch, _):
        await watch.until(ready)
        hub.inject(0, "+79161234567", "kept while the disk is full")
        while sink.refused < 4 * LINES_PER_SOURCE:  # a retry every 0.2 s
            sink.refusal.clear()
            await asyncio.wait_for(sink.refusal.wait(), 5)
        lines = [r for r in caplog.records if "until there is space" in r.getMessage()]
        assert len(lines) == LINES_PER_SOURCE  # the rest are counted for the summary
        sink.space = True
        await sink.inner.until(1)


async def test_direct_delivery_is_acknowledged_after_the_store_has_it(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(profile="sim800")
    modem = hub.slots[0].modem
    # A module that refuses stored indications (mt=1) and insists on +CMT.
    modem.profile = replace(
        modem.profile,
        cnmi_support=(
            frozenset({0, 1, 2}),
            frozenset({0, 2}),
            frozenset({0}),
            frozenset({0}),
            frozenset({0}),
        ),
    )
    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (worker, watch, _):
        await watch.until(ready)
        assert modem.settings.cnmi[:2] == (2, 2)
        assert modem.settings.csms == 1
        hub.inject(0, "+79161234567", "direct one")
        hub.inject(0, "+79161234567", "direct two")
        await sink.until(2)
        await settled(worker)
        acked = [e for e in hub.events if e["kind"] == "acked"]
        assert len(acked) == 2
        assert not [e for e in hub.events if e["kind"] == "unacked"]
        assert sink.calls[0]["index"] is None


class WrittenLines(logging.Handler):
    """The command lines a traced worker writes, with a wait for one of them."""

    def __init__(self) -> None:
        super().__init__(TRACE)
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.args and record.getMessage().startswith("-> "):
            self.lines.append(bytes(record.args[0]).decode("latin-1").strip())  # type: ignore[index]
            self._changed.set()

    async def until(self, line: str, times: int = 1, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while self.lines.count(line) < times:
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def written_lines(worker: ModemWorker) -> AsyncIterator[WrittenLines]:
    written = WrittenLines()
    trace = logging.getLogger("simedge.trace")
    trace.addHandler(written)
    trace.setLevel(TRACE)
    worker.send(WorkerCommand.TRACE_ON)
    try:
        yield written
    finally:
        worker.send(WorkerCommand.TRACE_OFF)
        trace.removeHandler(written)
        trace.setLevel(logging.NOTSET)


ONE_BY_ONE = {"AT+CSQ", "AT+CREG?", "AT+CPIN?", "AT+CNMI?", "AT+CPMS?"}


@pytest.mark.parametrize("profile", ["sim800", "ec25", "huawei"])
async def test_a_health_check_asks_everything_on_one_line(
    start_hub: StartHub, store: Store, profile: str
) -> None:
    hub = await start_hub(profile=profile)
    settings = replace(FAST, health_interval=0.05)
    async with running(hub, 0, RecordingSink(store), settings=settings) as (worker, watch, _):
        await watch.until(ready)
        async with written_lines(worker) as written:
            await written.until(HEALTH_LINE, times=3)
        assert not ONE_BY_ONE & set(written.lines)
        assert worker.status.state is ModemState.READY
        assert worker.status.signal_dbm is not None
        assert worker.status.registration == "home"


async def test_a_health_check_that_finds_nothing_new_publishes_nothing(
    start_hub: StartHub, store: Store
) -> None:
    """At rest the answers repeat: no status for the fleet, the numbers list and the
    dashboard to look at (issue 19). A moved signal is published, once."""
    hub = await start_hub(profile="sim800")
    settings = replace(FAST, health_interval=0.05)
    async with running(hub, 0, RecordingSink(store), settings=settings) as (worker, watch, _):
        await watch.until(ready)
        async with written_lines(worker) as written:
            await written.until(HEALTH_LINE, times=2)  # the first check's news are out
            published = len(watch.history)
            await written.until(HEALTH_LINE, times=6)
            assert len(watch.history) == published
            modem = hub.slots[0].modem
            modem.csq = 31 if modem.csq != 31 else 30
            await watch.until(lambda s: s.signal_dbm == SignalQuality(modem.csq).dbm)
            await written.until(HEALTH_LINE, times=written.lines.count(HEALTH_LINE) + 3)
        assert len(watch.history) == published + 1
        assert worker.status.state is ModemState.READY


async def test_a_refused_health_line_is_asked_one_by_one_until_the_next_set_up(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(profile="sim800")
    settings = replace(FAST, health_interval=0.05)
    async with running(hub, 0, RecordingSink(store), settings=settings) as (worker, watch, _):
        await watch.until(ready)
        async with written_lines(worker) as written:
            await written.until(HEALTH_LINE)
            hub.fault(0, "sim-out")  # +CPIN? fails with +CME ERROR: 10, so the whole line does
            await watch.until(lambda s: s.sim_state is SimState.ABSENT)
            await written.until("AT+CSQ", times=3)
            one_by_one = written.lines[written.lines.index("AT+CSQ") :]
            assert HEALTH_LINE not in one_by_one  # not tried again without a SIM
            assert set(one_by_one) >= {"AT+CSQ", "AT+CREG?", "AT+CPIN?"}
            assert worker.status.sim_state is SimState.ABSENT
            hub.fault(0, "sim-in")
            await watch.until(lambda s: ready(s) and s.sim_state is SimState.READY, within=10)
            back_at = len(written.lines)
            await written.until(HEALTH_LINE, times=3)
        assert "AT+CSQ" not in written.lines[back_at:]


@pytest.mark.parametrize("profile", ["sim800", "ec25"])
async def test_a_sweep_reads_the_modem_memory_a_full_sim_spilled_into(
    start_hub: StartHub, store: Store, profile: str
) -> None:
    # Issue 15 item 3: SMS in "ME" (where these modules put what a full SIM cannot take)
    # were never read. Fill the SIM through the network, two more spill into ME.
    hub = await start_hub(profile=profile)
    modem = hub.slots[0].modem
    assert modem.sim is not None
    spilled = 2
    total = modem.sim.storage.capacity + spilled
    for n in range(total):
        hub.inject(0, "+79161234567", f"code {n:04d}")
    await emulator_events(hub, "stored", total)
    assert (modem.sim.storage.used, modem.me.used) == (total - spilled, spilled)

    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (worker, watch, _):
        await watch.until(ready)
        await sink.until(total)
        await settled(worker)
        assert (modem.sim.storage.used, modem.me.used) == (0, 0)
        assert await message_count(store) == total
    storages = [call["storage"] for call in sink.calls]
    assert storages.count("ME") == spilled
    assert storages.count("SM") == total - spilled
    # mem1 is back on the SIM after the sweep; mem3 (where new SMS go) was never moved.
    assert modem.settings.cpms == ("SM", "SM", "SM")
