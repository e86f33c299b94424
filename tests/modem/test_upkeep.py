"""A worker's upkeep on an emulated modem with the real store: the balance asked at start
and again on demand, an unreadable answer kept with its text, a keep-alive (USSD or SMS)
run when due and its failure recorded, and the next check never further away than
``check_every``; an SMS that comes while a USSD answer is awaited is read at once, what
else comes meanwhile is held within the inbox's bound, and a modem unplugged meanwhile
ends the wait."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import regex

from agent.emulate.modems import Hub
from agent.emulate.modems.sim import OPERATORS, SimCard, make_sim
from agent.modem import balance
from agent.modem.keepalive import KeepalivePolicy
from agent.modem.session import URC_QUEUE_LIMIT
from agent.modem.upkeep import SimUpkeep, StoreUpkeepLedger
from agent.modem.worker import URCS_IN_INBOX, ModemWorker, PduSink, WorkerCommand
from agent.protocol.urc import parse_urc
from agent.status import ModemState
from agent.store import Store
from agent.store.models import Message, SimBalance, SimKeepalive
from tests.modem.conftest import FAST, RecordingSink, StartHub, StatusWatch, running

MTS = next(operator for operator in OPERATORS if operator.mcc_mnc == "25001")


async def rows_when(store: Store, model: type, count: int, watch: StatusWatch) -> list:
    """The table's rows once there are ``count``, looking again at each status the worker
    publishes (every upkeep check publishes one)."""
    while True:
        found = await store.read(lambda: list(model.select().order_by(model.id)))
        if len(found) >= count:
            return found
        await watch.next()


async def test_balance_at_start_on_demand_and_an_unreadable_answer(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(profile="ec25")
    sim = make_sim(random.Random(3), MTS)
    sim.balance = 42.0
    hub.slots[0].modem.sim = sim
    upkeep = SimUpkeep(
        StoreUpkeepLedger(store),
        balance_recipes=balance.BUILT_IN_RECIPES,
        keepalive_policies={},
        check_every=0.2,
    )
    async with running(hub, 0, store, upkeep=upkeep) as (worker, watch, _task):
        await watch.until(lambda s: s.balance == 42.0 and s.balance_currency == "RUB")
        sim.balance = 41.5
        worker.send(WorkerCommand.CHECK_BALANCE)
        await watch.until(lambda s: s.balance == 41.5)
        # An operator that changed its wording: nothing read, the answer kept as it came.
        upkeep.balance_recipes["25001"] = balance.BalanceRecipe(
            "*100#", regex.compile(r"Остаток (?P<amount>\d+)"), "RUB"
        )
        worker.send(WorkerCommand.CHECK_BALANCE)
        answers = await rows_when(store, SimBalance, 3, watch)
        status = watch.latest
        # Not a day later: the failed question is asked again after check_every, unasked.
        upkeep.balance_recipes["25001"] = balance.BUILT_IN_RECIPES["25001"]
        sim.balance = 40.0
        await watch.until(lambda s: s.balance == 40.0)
    assert [a.amount for a in answers] == [42.0, 41.5, None]
    assert answers[2].answer == "Баланс:41,50р"
    assert answers[2].error == "no amount in the answer to *100#"
    assert {a.iccid for a in answers} == {sim.iccid}
    assert status is not None
    assert status.balance == 41.5  # the last amount read stays shown


async def test_keepalive_runs_when_due_and_a_refusal_is_recorded(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(profile="sim800")
    sim = make_sim(random.Random(4), MTS)
    hub.slots[0].modem.sim = sim
    now = [2_000_000_000.0]
    upkeep = SimUpkeep(
        StoreUpkeepLedger(store),
        balance_recipes={},
        keepalive_policies={"25001": KeepalivePolicy(days=10, ussd=MTS.paid_code)},
        check_every=0.2,
        clock=lambda: now[0],
    )
    async with running(hub, 0, store, upkeep=upkeep) as (_worker, watch, _task):
        first = await watch.until(lambda s: s.active_until is not None)
        assert first.active_until is not None
        assert sim.last_activity is None  # not due yet: nothing dialled
        now[0] = first.active_until - 0.5 * 86400  # within the last day: due
        kept = await watch.until(lambda s: (s.active_until or 0) > first.active_until)
        assert sim.last_activity is not None  # the network counted a chargeable event
        # The network refuses the code from now on: the attempt and why are kept.
        upkeep.keepalive_policies["25001"] = KeepalivePolicy(days=10, ussd="*999#")
        assert kept.active_until is not None
        now[0] = kept.active_until - 0.5 * 86400
        actions = await rows_when(store, SimKeepalive, 2, watch)
    assert [(a.action, a.error) for a in actions[:1]] == [(f"ussd {MTS.paid_code}", None)]
    assert actions[1].action == "ussd *999#"
    assert actions[1].error == "answered TERMINATED without text"


async def test_sms_keepalive_reaches_the_number_keeps_the_sim_and_a_refusal_is_recorded(
    start_hub: StartHub, store: Store
) -> None:
    # One simulated clock for the agent's upkeep and the emulated network's lapse clock.
    now = [2_000_000_000.0]
    hub = await start_hub(
        count=2,
        profile="ec25",
        sms_delay=0.05,
        wall_clock=lambda: datetime.fromtimestamp(now[0], UTC),
    )
    sim = make_sim(random.Random(5), MTS)
    sim.lapse_days = 10
    sim.last_activity = now[0]
    receiver = make_sim(random.Random(6), MTS)
    hub.slots[0].modem.sim, hub.slots[1].modem.sim = sim, receiver
    policy = KeepalivePolicy(days=10, sms_to=receiver.msisdn, sms_text="keep-alive ж")
    upkeep = SimUpkeep(
        StoreUpkeepLedger(store),
        balance_recipes={},
        keepalive_policies={"25001": policy},
        check_every=0.2,
        clock=lambda: now[0],
    )
    sink = RecordingSink(store)
    async with (
        running(hub, 1, sink),
        running(hub, 0, store, upkeep=upkeep) as (_worker, watch, _task),
    ):
        first = await watch.until(lambda s: s.active_until is not None)
        assert first.active_until == now[0] + 10 * 86400
        assert sim.last_activity == now[0]  # not due yet: nothing sent
        now[0] = first.active_until - 0.5 * 86400  # within the last day: due
        kept = await watch.until(lambda s: (s.active_until or 0) > first.active_until)
        assert kept.active_until == now[0] + 10 * 86400
        await sink.until(1)  # the SMS arrived at the number, on the hub's other SIM
        # Past the first deadline, and the network still serves the SIM.
        now[0] = first.active_until + 3600
        assert not sim.lapsed(now[0])
        assert hub.slots[0].modem.registration_status == 1
        # No credit from now on: the SMSC refuses the next keep-alive, and why is kept.
        sim.credit = False
        assert kept.active_until is not None
        now[0] = kept.active_until - 0.5 * 86400
        await rows_when(store, SimKeepalive, 2, watch)
        # The retry is bounded: not at every check, only once check_every has passed.
        for _ in range(2):
            await watch.next()
        assert await store.read(lambda: SimKeepalive.select().count()) == 2
        now[0] += upkeep.check_every
        actions = await rows_when(store, SimKeepalive, 3, watch)
        arrived = await store.read(lambda: list(Message.select()))
    refused = (f"sms {receiver.msisdn}", None, "+CMS ERROR: 21 short message transfer rejected")
    assert [(a.action, a.answer, a.error) for a in actions] == [
        (f"sms {receiver.msisdn}", "+CMGS: 1", None),
        refused,
        refused,
    ]
    assert [(m.sender, m.text, m.sim_id) for m in arrived] == [
        (sim.msisdn, "keep-alive ж", receiver.iccid)
    ]
    assert sim.last_activity == actions[0].at.timestamp()  # the SMS was the chargeable event
    assert sim.balance == 99.0  # one SMS charged; the refused one was not


async def test_without_the_keepalive_the_emulated_sim_lapses(start_hub: StartHub) -> None:
    """The check that can fail: the same SIM and clock, no policy, and the network cuts it."""
    now = [2_000_000_000.0]
    hub = await start_hub(wall_clock=lambda: datetime.fromtimestamp(now[0], UTC))
    sim = make_sim(random.Random(5), MTS)
    sim.lapse_days = 10
    sim.last_activity = now[0]
    hub.slots[0].modem.sim = sim
    now[0] += 10 * 86400 + 3600
    assert sim.lapsed(now[0])
    assert hub.slots[0].modem.registration_status == 3  # denied


@dataclass
class Asking:
    """A worker on modem 0 of a SIM800 hub whose network takes an hour over a USSD question,
    once its first balance question (a SIM first seen) reached the network: ``asked`` is set
    again at the next question, ``codes`` has every code asked."""

    hub: Hub
    sim: SimCard
    worker: ModemWorker
    watch: StatusWatch
    task: asyncio.Task[Any]
    asked: asyncio.Event
    codes: list[str]


@asynccontextmanager
async def asking(
    start_hub: StartHub, sink: PduSink, store: Store, *, answer_within: float, **hub: Any
) -> AsyncIterator[Asking]:
    """``hub``: more options of the hub (``slow_delay``)."""
    started = await start_hub(profile="sim800", **hub)
    started.slots[0].modem.ussd_delay = 3600.0
    sim = make_sim(random.Random(7), MTS)
    started.slots[0].modem.sim = sim
    asked, codes = asyncio.Event(), []
    answer = sim.ussd_answer

    def observed(code: str, now: float) -> tuple[str, str, int] | None:
        codes.append(code)
        asked.set()
        return answer(code, now)

    sim.ussd_answer = observed  # type: ignore[method-assign]
    upkeep = SimUpkeep(
        StoreUpkeepLedger(store),
        balance_recipes=balance.BUILT_IN_RECIPES,
        keepalive_policies={},
        check_every=3600.0,
    )
    settings = replace(FAST, ussd_answer_within=answer_within)
    async with running(started, 0, sink, upkeep=upkeep, settings=settings) as (w, watch, task):
        await asyncio.wait_for(asked.wait(), 10)
        asked.clear()
        yield Asking(started, sim, w, watch, task, asked, codes)


async def test_an_sms_that_comes_while_a_ussd_answer_is_awaited_is_read_at_once(
    start_hub: StartHub, store: Store
) -> None:
    # A question that is not answered (the worker gives up after 3 s) twice: the SMS is
    # stored while the first still waits, and a command that came meanwhile (ask the
    # balance now) is held and run after it, not lost and not run in the middle of it.
    sink = RecordingSink(store)
    async with asking(start_hub, sink, store, answer_within=3.0) as site:
        site.hub.inject(0, "+79161234567", "code 4711 while the network thinks")
        site.worker.send(WorkerCommand.CHECK_BALANCE)
        await sink.until(1, within=10)
        assert await store.read(lambda: SimBalance.select().count()) == 0  # still waiting
        answers = await rows_when(store, SimBalance, 2, site.watch)
        await asyncio.wait_for(site.asked.wait(), 10)  # the held command asked again
    texts = await store.read(lambda: [message.text for message in Message.select()])
    assert texts == ["code 4711 while the network thinks"]
    assert [answer.error for answer in answers] == ["no answer in 3 s"] * 2
    assert answers[0].at < answers[1].at


async def test_a_modem_unplugged_while_a_ussd_answer_is_awaited_ends_the_wait(
    start_hub: StartHub, store: Store
) -> None:
    async with asking(start_hub, store, store, answer_within=3600.0) as site:
        site.hub.fault(0, "unplug")
        gone = await asyncio.wait_for(site.task, 10)  # not an hour later
        latest = site.watch.latest
    assert gone.state is ModemState.GONE
    assert latest is not None
    assert latest.state is ModemState.GONE


async def test_urcs_flooding_a_port_whose_ussd_answer_is_awaited_stay_within_the_bound(
    start_hub: StartHub, store: Store
) -> None:
    """What the worker holds while it waits (every URC but an SMS's) counts in the inbox's
    bound: a port printing URCs meanwhile fills the session's bounded queue, never the
    worker's memory."""
    async with asking(start_hub, store, store, answer_within=3600.0) as site:
        worker = site.worker
        session = worker.session
        flood = URC_QUEUE_LIMIT + 2 * URCS_IN_INBOX
        for n in range(flood):
            session._dispatch(parse_urc(f"+CREG: {1 + n % 2}"))  # as if read from the port
            await asyncio.sleep(0)  # the worker's chance to take what it may
        assert len(worker._held) + worker._inbox.qsize() <= URCS_IN_INBOX
        assert session.urcs.qsize() == URC_QUEUE_LIMIT
        assert session.urcs_dropped == flood - URC_QUEUE_LIMIT - URCS_IN_INBOX


async def test_an_sms_after_a_sim_change_during_a_ussd_wait_is_stored_for_the_new_sim(
    start_hub: StartHub, store: Store
) -> None:
    """A SIM bank switches the slot while the old SIM's question waits: the question ends
    (it was the old SIM's), and an SMS that comes after the change is read after the new
    SIM is set up, for the new SIM, not at once under the old one's ICCID."""
    sink = RecordingSink(store)
    async with asking(start_hub, sink, store, answer_within=3600.0) as site:
        site.hub.fault(0, "sim-in")  # +CPIN: NOT INSERTED, then the new SIM's ready lines
        new_sim = site.hub.slots[0].modem.sim
        assert new_sim is not None
        site.hub.inject(0, "+79161234567", "code 4711 for the new SIM")
        await sink.until(1, within=15)
        answers = await store.read(lambda: [(row.iccid, row.error) for row in SimBalance.select()])
    rows = await store.read(lambda: [(row.sim_id, row.text) for row in Message.select()])
    assert rows == [(new_sim.iccid, "code 4711 for the new SIM")]
    assert answers[0] == (
        site.sim.iccid,
        "no answer: the modem said '+CPIN: NOT INSERTED' meanwhile",
    )


async def test_a_read_that_times_out_during_a_ussd_wait_ends_the_question_recorded(
    start_hub: StartHub, store: Store
) -> None:
    """The port stalls right after it announces an SMS during a question: the question ends
    with its outcome recorded (not asked again at once), then the timeout takes the
    recovery ladder as in the read's own turn, and the SMS is swept in after it."""
    sink = RecordingSink(store)
    # Output late by 1 s once "slow" is on: past FAST's command timeout of 0.5 s.
    async with asking(start_hub, sink, store, answer_within=3600.0, slow_delay=1.0) as site:
        site.hub.fault(0, "slow")
        site.hub.inject(0, "+79161234567", "code 4711 through a stalled port")
        await site.watch.until(lambda status: status.state is ModemState.RECOVERING, within=10)
        site.hub.fault(0, "clear")
        await sink.until(1, within=15)
        errors = await store.read(lambda: [row.error for row in SimBalance.select()])
    assert len(errors) == 1
    assert errors[0].startswith("no answer: reading an SMS meanwhile failed: ")
    assert site.codes == ["*100#"]  # recorded, so not asked again after the recovery
