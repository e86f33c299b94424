"""ModemWorker surviving every fault the emulated modems can show, and the recovery ladder."""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agent.logs import TRACE
from agent.modem.worker import ModemWorker, WorkerCommand
from agent.status import ModemState, SimState
from agent.store import Store
from tests.modem.conftest import (
    FAST,
    RecordingSink,
    StartHub,
    StatusWatch,
    at_link,
    emulator_events,
    ready,
    running,
    settled,
    stored_on_modem,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_hang_climbs_the_ladder_to_failed_then_recovers_on_the_back_off(
    start_hub: StartHub, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="simedge.modem")
    hub = await start_hub(profile="sim800")
    async with running(hub, 0, RecordingSink(store)) as (_, watch, _):
        await watch.until(ready)
        hub.fault(0, "hang")
        failed = await watch.until(lambda s: s.state is ModemState.FAILED, within=15)
        assert failed.fault is not None
        assert "reopen the port did not help" in failed.fault
        steps = [r.getMessage() for r in caplog.records if "recovery:" in r.getMessage()]
        assert any("re-sync" in step for step in steps)
        assert any("AT+CFUN=1,1" in step for step in steps)
        assert any("reopen the port" in step for step in steps)
        assert all("because" in step for step in steps)  # each step says why
        hub.fault(0, "clear")
        await watch.until(ready, within=10)  # the back-off retry finds it answering again
        hub.inject(0, "+79161234567", "after the hang")
        await emulator_events(hub, "stored", 1)


async def test_power_cycle_command_is_the_last_rung(
    start_hub: StartHub, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="simedge.modem")
    hub = await start_hub(profile="ec25")
    # The emulator's power switch: the hub's CLI ends the hang, as uhubctl would.
    command = (
        f"{shlex.quote(sys.executable)} -m agent.cli emulate fault "
        f"--dir {shlex.quote(str(hub.directory))} --modem {{slot}} --clear"
    )
    settings = replace(FAST, power_cycle_command=command)
    async with running(hub, 0, RecordingSink(store), settings=settings) as (_, watch, _):
        await watch.until(ready)
        hub.fault(0, "hang")
        await watch.until(lambda s: s.state is ModemState.RECOVERING)
        await watch.until(ready, within=20)
        assert not [s for s in watch.history if s.state is ModemState.FAILED]
        assert any("power cycle done" in r.getMessage() for r in caplog.records)


# Huawei gives no boot line the agent relies on: the health check finds +CNMI reset.
@pytest.mark.parametrize("profile", ["sim800", "ec25", "huawei"])
async def test_reboot_mid_session_sets_the_modem_up_again(
    start_hub: StartHub, store: Store, profile: str
) -> None:
    hub = await start_hub(profile=profile)
    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (_, watch, _):
        await watch.until(ready)
        hub.fault(0, "reboot")  # +CNMI is lost; EC25 says RDY..., the others nothing we use
        await watch.until(lambda s: s.state is not ModemState.READY, within=5)
        await watch.until(ready, within=10)
        assert hub.slots[0].modem.settings.cnmi[:2] == (2, 1)  # set again
        hub.inject(0, "+79161234567", "after the reboot")
        (result,) = await sink.until(1)
        assert result.message_id is not None


async def test_garbage_and_slow_answers_are_survived(start_hub: StartHub, store: Store) -> None:
    hub = await start_hub(profile="huawei", slow_delay=0.2)
    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (worker, watch, _):
        await watch.until(ready)
        hub.fault(0, "garbage")
        hub.fault(0, "slow")
        hub.inject(0, "+79161234567", "through the noise")
        (result,) = await sink.until(1, within=10)
        assert result.message_id is not None
        await settled(worker)
        assert stored_on_modem(hub, 0) == 0
        assert worker.status.state is ModemState.READY


async def test_unplug_ends_the_worker_gone_and_a_replug_is_a_new_worker(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(profile="ec25")
    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (_, watch, task):
        await watch.until(ready)
        hub.fault(0, "unplug")
        final = await task
        assert final.state is ModemState.GONE
        assert final.fault
    hub.fault(0, "replug")
    async with running(hub, 0, sink) as (_, watch, task):
        await watch.until(ready)
        hub.fault(0, "replug")  # the old pty vanishes under a running worker too
        assert (await task).state is ModemState.GONE


@pytest.mark.parametrize("profile", ["sim800", "huawei"])  # Huawei says ^SIMST:1 when in
async def test_sim_out_and_in(start_hub: StartHub, store: Store, profile: str) -> None:
    hub = await start_hub(profile=profile)
    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (_, watch, _):
        first = await watch.until(ready)
        hub.fault(0, "sim-out")
        out = await watch.until(lambda s: s.sim_state is SimState.ABSENT)
        assert out.iccid is None
        assert out.fault == "SIM absent"
        hub.fault(0, "sim-in")  # another SIM
        new = await watch.until(lambda s: ready(s) and s.iccid not in (None, first.iccid))
        assert hub.slots[0].modem.sim is not None
        assert new.iccid == hub.slots[0].modem.sim.iccid
        assert new.sim_state is SimState.READY
        hub.inject(0, "+79161234567", "to the new SIM")
        await sink.until(1)
        assert sink.calls[0]["iccid"] == new.iccid


async def test_storage_full_is_emptied(start_hub: StartHub, store: Store) -> None:
    hub = await start_hub(profile="sim800")
    sink = RecordingSink(store)
    async with running(hub, 0, sink) as (worker, watch, _):
        await watch.until(ready)
        hub.fault(0, "storage-full")
        hub.inject(0, "+79161234567", "waits in the network until there is room")
        await sink.until(31, within=15)  # the 30 old ones and the new one
        await settled(worker)
        assert stored_on_modem(hub, 0) == 0


async def test_huawei_storage_full_urc_empties_at_once(start_hub: StartHub, store: Store) -> None:
    settings = replace(FAST, health_interval=60)  # no health check to find it first
    hub = await start_hub(profile="huawei")
    sink = RecordingSink(store)
    async with running(hub, 0, sink, settings=settings) as (_, watch, _):
        await watch.until(ready)
        hub.fault(0, "storage-full")
        hub.inject(0, "+79161234567", "new")  # storage full: ^SMMEMFULL
        await sink.until(31, within=15)


async def test_deregister_and_reregister_update_state_at_once(
    start_hub: StartHub, store: Store
) -> None:
    settings = replace(FAST, health_interval=60)  # only the +CREG URCs can tell
    hub = await start_hub(profile="ec25")
    async with running(hub, 0, RecordingSink(store), settings=settings) as (_, watch, _):
        await watch.until(lambda s: ready(s) and s.registered)
        hub.fault(0, "deregister")
        lost = await watch.until(lambda s: not s.registered)
        assert lost.registration == "searching"
        hub.fault(0, "reregister")
        back = await watch.until(lambda s: s.registered)
        assert back.registration == "home"


async def test_trace_and_reset_commands_at_run_time(
    start_hub: StartHub, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(TRACE)
    logging.getLogger("simedge.trace").setLevel(logging.DEBUG + 1)  # as logs.setup() does
    hub = await start_hub(profile="sim800", count=2)
    sink = RecordingSink(store)
    watch = StatusWatch()
    worker = ModemWorker(at_link(hub, 0), slot="slot-a", sink=sink, on_status=watch, settings=FAST)
    other = ModemWorker(at_link(hub, 1), slot="slot-b", sink=sink, settings=FAST)
    tasks = [asyncio.create_task(w.run()) for w in (worker, other)]
    try:
        await watch.until(ready)
        worker.send(WorkerCommand.TRACE_ON)
        worker.send(WorkerCommand.RESET)
        await watch.until(lambda s: s.state is ModemState.RECOVERING)
        await watch.until(ready, within=10)
        traced = {r.name for r in caplog.records if r.name.startswith("simedge.trace")}
        assert traced == {"simedge.trace.slot-a"}  # one port only
        assert any("AT+CFUN=1,1" in r.getMessage() for r in caplog.records)
        worker.send(WorkerCommand.TRACE_OFF)
        await settled(worker)
        caplog.clear()
        hub.inject(0, "+79161234567", "untraced")
        await sink.until(1)
        await settled(worker)
        assert not [r for r in caplog.records if r.name.startswith("simedge.trace")]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        logging.getLogger("simedge.trace").setLevel(logging.NOTSET)
