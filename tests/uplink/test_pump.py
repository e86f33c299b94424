"""The outbox pump against the OnlineSim stand-in: every answer of addMessage, in order."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from agent.status import UplinkCondition
from agent.store import OutboxMessage, Store
from agent.store.models import DeliveryAttempt, Message
from agent.uplink import NumberItem, OnlineSimClient, UplinkSettings, transient_backoff
from agent.uplink.numbers import NumbersSync
from agent.uplink.pump import OutboxPump
from agent.uplink.state import UplinkTracker
from agent.webhook.metrics import Metrics
from tests.uplink.world import FAST, KEY, PROBE, SCTS, Outcomes, World, sim_status, world

__all__ = ["world"]  # the fixture, imported for pytest

A, B, C = "8970101234567890001", "8970101234567890002", "8970101234567890003"
NUMBERS = {A: "+79161230001", B: "+79161230002", C: "+79161230003"}


async def online(world: World, *iccids: str) -> None:
    """SIMs with numbers, and those numbers in the stand-in's list (as a list sent earlier)."""
    for n, iccid in enumerate(iccids):
        await world.add_sim(iccid, NUMBERS[iccid], slot=f"usb-1.{n + 1}")
    await world.client.send_numbers_online(
        [NumberItem(number=NUMBERS[iccid], country_id=7, date_start=1) for iccid in iccids]
    )


def pump_for(world: World, outcomes: Outcomes | None = None, **options: object) -> OutboxPump:
    settings: dict[str, object] = {"policy": FAST, "probe": PROBE} | options
    return OutboxPump(world.client, world.store, on_outcome=outcomes, **settings)  # type: ignore[arg-type]


def metric(metrics: Metrics, line_start: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {line_start}")


async def test_messages_go_up_at_once_in_order_with_the_exact_fields(world: World) -> None:
    await online(world, A, B)
    # A national number on SIM B: sent in E.164 from the IMSI's country (MCC 250: RU).
    await world.add_sim(B, "89161230002", slot="usb-1.2")
    metrics = Metrics()
    outcomes = Outcomes()
    world.start(pump_for(world, outcomes, metrics=metrics).run())

    texts = ["code 1", "Код: 2 🙂", "code 3"]
    for text in texts:
        await world.receive(A, text, sender="VKcom")
    await world.receive(B, "hello", sender="+79990001122", slot="usb-1.2")
    await outcomes.until(lambda: len(outcomes.seen) == 4)

    received = world.standin.state.messages
    assert [m.text for m in received if m.number == NUMBERS[A]] == texts
    to_b = next(m for m in received if m.number == NUMBERS[B])
    assert (to_b.sender, to_b.text) == ("+79990001122", "hello")
    first = received[0]
    assert first.date == int((SCTS + timedelta(seconds=1)).timestamp())  # the SCTS, not now
    assert first.sender == "VKcom"
    counts = await world.store.outbox_counts()
    assert (counts.pending, counts.backing_off, counts.dead) == (0, 0, 0)
    assert metric(metrics, "simedge_sms_forwarded_total") == 4
    assert metric(metrics, "simedge_delivery_latency_seconds_count") == 4


@pytest.mark.parametrize(
    ("force", "status"),
    [
        ("ERROR_NO_KEY", 401),
        ("ERROR_WRONG_KEY", 401),
        ("ACCOUNT_BLOCKED", 403),
        ("API_ACCESS_DISABLED", 403),
        ("API_ACCESS_IP", 403),
    ],
)
async def test_an_account_refusal_pauses_with_an_alarm_and_drops_nothing(
    world: World, force: str, status: int
) -> None:
    await online(world, A)
    await world.standin.set_faults(force=force)
    outcomes = Outcomes()
    state = UplinkTracker()
    world.start(pump_for(world, outcomes, state=state).run())
    message = await world.receive(A, "code 1")
    await world.receive(A, "code 2")

    # Probes keep going at the probe pace, one at a time, always the SIM's first message.
    await outcomes.until(lambda: outcomes.of(message).count("paused") >= 3)
    assert state.snapshot.condition is UplinkCondition.PAUSED
    assert state.snapshot.code == force
    probes = world.requests("addMessage")
    assert {r.status for r in probes} == {status}
    assert all('"code 1"' in r.body for r in probes)
    alarms = [e for e in await world.store.recent_events() if e.level == "alarm"]
    assert len(alarms) == 1
    assert force in alarms[0].text
    counts = await world.store.outbox_counts()
    assert (counts.pending, counts.dead) == (2, 0)

    await world.standin.set_faults(clear=True)
    await outcomes.until(lambda: outcomes.seen.count((message, "sent")) == 1)
    await world.until(lambda state: len(state.messages) == 2)
    assert [m.text for m in world.standin.state.messages] == ["code 1", "code 2"]
    assert state.snapshot.condition is UplinkCondition.OK


async def test_a_wrong_base_url_405_pauses_the_uplink(world: World) -> None:
    await online(world, A)
    wrong = OnlineSimClient(UplinkSettings(base_url=f"{world.standin.url}/api/resale", api_key=KEY))
    outcomes = Outcomes()
    state = UplinkTracker()
    world.start(
        OutboxPump(
            wrong, world.store, policy=FAST, probe=PROBE, state=state, on_outcome=outcomes
        ).run()
    )
    try:
        message = await world.receive(A, "code 1")
        await outcomes.until(lambda: outcomes.of(message).count("paused") >= 2)
    finally:
        await world.stop_tasks()
        await wrong.aclose()
    assert (state.snapshot.condition, state.snapshot.code) == (
        UplinkCondition.PAUSED,
        "REQUEST_NOT_FOUND",
    )
    assert {r.status for r in world.requests("addMessage")} == {405}
    assert (await world.store.outbox_counts()).pending == 1


async def test_no_number_sends_the_list_again_then_delivers(world: World) -> None:
    await world.add_sim(A, NUMBERS[A])
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, NUMBERS[A])
    numbers = NumbersSync(world.client, world.store, world.live, policy=FAST, heartbeat=300)
    world.start(numbers.run())
    await world.until(lambda state: NUMBERS[A] in state.online)
    world.standin.state.reset()  # OnlineSim forgot the number (a restart on their side)

    world.start(pump_for(world, numbers=numbers).run())
    await world.receive(A, "code 1")
    await world.until(lambda state: len(state.messages) == 1)

    calls = [(r.path.rsplit("/", 1)[1], r.status) for r in world.standin.state.requests]
    assert calls == [("addMessage", 400), ("sendNumbersOnline", 200), ("addMessage", 200)]
    assert '"NO_NUMBER"' in world.standin.state.requests[0].answer


async def _dead(world: World, message_id: int) -> tuple[Message, DeliveryAttempt]:
    row = Message.get_by_id(message_id)
    attempt = DeliveryAttempt.select().where(DeliveryAttempt.message == message_id).get()
    return row, attempt


@pytest.mark.parametrize("code", ["NUMBER_FORMAT_ERROR", "ERROR_PARAMS", "ERROR_DATE"])
async def test_a_refusal_makes_a_dead_letter_that_can_be_sent_again(
    world: World, code: str
) -> None:
    await online(world, A)
    outcomes = Outcomes()
    metrics = Metrics()
    if code == "NUMBER_FORMAT_ERROR":
        await world.store.set_sim_number(A, "12345")  # no country, not a possible number
    message = await world.receive(A, "" if code == "ERROR_PARAMS" else "code 1")
    if code == "ERROR_DATE":
        # A timestamp before 1970 (a corrupt clock field): `date` cannot be unix seconds.
        await world.store.writer.submit(
            lambda: Message.update(scts=datetime(1969, 12, 31, tzinfo=UTC)).execute(), "corrupt"
        )
    world.start(pump_for(world, outcomes, metrics=metrics).run())
    await outcomes.until(lambda: outcomes.of(message) == ["dead"])
    await world.store.set_sim_number(A, NUMBERS[A])
    later = await world.receive(A, "code 2")  # the dead letter holds nothing back
    await outcomes.until(lambda: "sent" in outcomes.of(later))
    row, attempt = await _dead(world, message)
    assert row.state == "dead"
    assert row.last_error.startswith(code)
    assert (attempt.outcome, attempt.http_status) == ("dead", 400)
    assert code in attempt.body  # the raw answer is kept
    assert metric(metrics, "simedge_sms_dead_total") == 1
    assert metric(metrics, f'simedge_uplink_errors_total{{code="{code}"}}') == 1

    # Fixed by a person and sent again by hand.
    await world.store.writer.submit(
        lambda: Message.update(scts=SCTS, text="fixed").where(Message.id == message).execute(),
        "fix",
    )
    await world.store.retry(message)
    await outcomes.until(lambda: "sent" in outcomes.of(message))
    assert [m.text for m in world.standin.state.messages] == ["code 2", "fixed"]


@pytest.mark.parametrize(
    "fault",
    [
        {"error_rate": 1.0},
        {"status_429_rate": 1.0, "retry_after": 0},
        {"reset_rate": 1.0},
        {"latency": 1.0},  # beyond the client's 0.5 s read timeout
        {"down": True},
    ],
    ids=["5xx", "429", "reset", "timeout", "down"],
)
async def test_a_flaky_link_backs_off_then_delivers(world: World, fault: dict[str, object]) -> None:
    await online(world, A)
    outcomes = Outcomes()
    state = UplinkTracker()
    world.start(pump_for(world, outcomes, state=state).run())
    await world.standin.set_faults(**fault)
    message = await world.receive(A, "code 1")

    await outcomes.until(lambda: outcomes.of(message).count("retry") >= 2)
    assert state.snapshot.condition is UplinkCondition.BACKING_OFF
    # The link backs off, not the message: its attempts are in its history, but it has no
    # retry time of its own that could hold it back once the link is up.
    row = Message.get_by_id(message)
    assert (row.attempts, row.next_attempt_at) == (0, None)
    history = DeliveryAttempt.select().where(DeliveryAttempt.message == message)
    assert [a.outcome for a in history][:2] == ["retry", "retry"]

    await world.standin.set_faults(clear=True)
    await outcomes.until(lambda: "sent" in outcomes.of(message))
    texts = [m.text for m in world.standin.state.messages]
    if "latency" in fault:
        # The stand-in accepted the timed-out attempts after the client gave up: the API
        # has no message id, so a read timeout can only be retried (docs/onlinesim-api.md).
        assert set(texts) == {"code 1"}
    else:
        assert texts == ["code 1"]
    assert state.snapshot.condition is UplinkCondition.OK


async def test_a_long_outage_drains_the_whole_backlog_in_order_per_sim(world: World) -> None:
    await online(world, A, B, C)
    slots = {A: "usb-1.1", B: "usb-1.2", C: "usb-1.3"}
    outcomes = Outcomes()
    world.start(pump_for(world, outcomes, max_in_flight=2).run())
    await world.standin.set_faults(down=True)
    sent: dict[str, list[str]] = {iccid: [] for iccid in slots}
    for n in range(60):
        iccid = (A, B, C)[n * 7 % 3]
        text = f"{iccid[-1]}-{n}"
        sent[iccid].append(text)
        await world.receive(iccid, text, slot=slots[iccid])
    await world.standin.set_faults(down=False)

    await outcomes.until(lambda: [o for _, o in outcomes.seen].count("sent") == 60)
    for iccid, texts in sent.items():
        got = [m.text for m in world.standin.state.messages if m.number == NUMBERS[iccid]]
        assert got == texts
    counts = await world.store.outbox_counts()
    assert (counts.pending, counts.backing_off, counts.dead) == (0, 0, 0)


async def test_the_retry_schedule_survives_a_restart(world: World) -> None:
    # An answer about the message itself (NO_NUMBER, no numbers sync to resend the list)
    # gives it a back-off of its own, persisted.
    await world.add_sim(A, NUMBERS[A])
    outcomes = Outcomes()
    slow = transient_backoff(initial=3600, cap=3600, jitter=0.0)
    world.start(pump_for(world, outcomes, policy=slow).run())
    message = await world.receive(A, "code 1")
    await outcomes.until(lambda: outcomes.of(message) == ["retry"])
    await world.stop_tasks()
    path = world.store.path
    await world.store.close()

    world.store = await Store.open(path)
    await online(world, A)
    restarted = Outcomes()
    world.start(pump_for(world, restarted, policy=slow).run())
    now = datetime.now(UTC)
    # Not due again until the hour has passed, and remembered as the first attempt.
    assert await world.store.due_messages(now, 10) == []
    (due,) = await world.store.due_messages(now + timedelta(seconds=3601), 10)
    assert (due.id, due.attempts) == (message, 1)
    assert (await world.store.outbox_counts()).backing_off == 1

    await world.store.retry(message)  # by hand: due now
    await restarted.until(lambda: restarted.of(message) == ["sent"])
    assert [m.text for m in world.standin.state.messages] == ["code 1"]


async def test_after_a_restart_every_persisted_retry_time_is_kept(world: World) -> None:
    """Found by make chaos: only the earliest persisted retry time was known after a
    restart, so a SIM whose retry came later was never tried again."""
    await online(world, A, B)
    first = await world.receive(A, "code A")
    second = await world.receive(B, "code B", slot="usb-1.2")
    now = time.time()
    await world.store.schedule_retry(first, 1, now + 0.2, "ReadTimeout: earlier")
    await world.store.schedule_retry(second, 1, now + 0.6, "ReadTimeout: later")
    outcomes = Outcomes()
    world.start(pump_for(world, outcomes).run())
    await outcomes.until(lambda: outcomes.of(first) == ["sent"] and outcomes.of(second) == ["sent"])
    assert sorted(m.text for m in world.standin.state.messages) == ["code A", "code B"]


class CountedReads:
    """The store's two outbox reads, counted: the scan of every SIM's first pending
    message (``due_messages``) and one SIM's queue (``sim_queue``)."""

    def __init__(self, store: Store) -> None:
        self.scans = 0
        self.sim_reads = 0
        self.scanned = asyncio.Event()
        due_messages, sim_queue = store.due_messages, store.sim_queue

        async def counted_scan(now: datetime | float, limit: int) -> list[OutboxMessage]:
            self.scans += 1
            self.scanned.set()
            return await due_messages(now, limit)

        async def counted_read(
            iccid: str, now: datetime | float, limit: int
        ) -> list[OutboxMessage]:
            self.sim_reads += 1
            return await sim_queue(iccid, now, limit)

        store.due_messages = counted_scan  # type: ignore[method-assign]
        store.sim_queue = counted_read  # type: ignore[method-assign]


async def test_a_fresh_message_costs_one_read_of_its_sims_queue(world: World) -> None:
    # The scan reads every SIM's first pending message: it runs at the start and for
    # timers and changes of state, never for a fresh SMS, which reads its own SIM's queue
    # once (at 20 SMS/s on 64 SIMs the scan was a tenth of the agent's CPU, issue 19).
    # Neither the success (the link OK before and after) nor the end of a request that
    # drained its SIM's queue may add a read.
    await online(world, A)
    reads = CountedReads(world.store)
    outcomes = Outcomes()
    world.start(pump_for(world, outcomes).run())
    async with asyncio.timeout(5):
        await reads.scanned.wait()
    messages = 6
    for number in range(1, messages + 1):
        await world.receive(A, f"code {number}")  # one at a time: each its own wake-ups
        await outcomes.until(lambda number=number: len(outcomes.seen) == number)
    assert [outcome for _id, outcome in outcomes.seen] == ["sent"] * messages
    assert (reads.scans, reads.sim_reads) == (1, messages)


async def test_a_message_stored_while_its_sims_request_is_out_goes_next(world: World) -> None:
    # SIM A's second SMS is committed while the first one's addMessage waits for its
    # answer: A's task must read A's queue again after it (the store said A has a fresh
    # one), in order, and B's goes at once beside it; no scan is needed for either.
    await online(world, A, B)
    reads = CountedReads(world.store)
    outcomes = Outcomes()
    world.start(pump_for(world, outcomes).run())
    async with asyncio.timeout(5):
        await reads.scanned.wait()
    await world.standin.set_faults(latency=0.3)  # under the client's read timeout
    first = await world.receive(A, "A first")
    await world.until(lambda _state: len(world.requests("addMessage")) == 1)
    second = await world.receive(A, "A second")
    other = await world.receive(B, "B only", slot="usb-1.2")
    await world.standin.set_faults(latency=0.0)
    await outcomes.until(lambda: {first, second, other} <= set(outcomes.accepted))
    texts = [json.loads(request.body)["message"] for request in world.requests("addMessage")]
    assert texts.index("A first") < texts.index("A second")
    assert sorted(texts) == ["A first", "A second", "B only"]  # each once
    assert reads.scans == 1


async def test_a_sent_mark_rides_with_the_next_sms_commit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One SMS per SIM at a time, as on a site: each message's "sent" waits for the next
    # SMS's commit instead of a transaction of its own (issue 19). The deadline is made far
    # so that only the next commit can take it (the agent's is MARK_SENT_WITHIN).
    monkeypatch.setattr("agent.store.store.MARK_SENT_WITHIN", 3600.0)
    await online(world, A, B, C)
    outcomes = Outcomes()
    world.start(pump_for(world, outcomes).run())
    sims = [(A, "usb-1.1"), (B, "usb-1.2"), (C, "usb-1.3")]
    before = world.store.writer.transactions
    ids = []
    for iccid, slot in sims * 2:
        ids.append(await world.receive(iccid, f"code {len(ids) + 1}", slot=slot))
        await outcomes.until(lambda: ids[-1] in outcomes.accepted)
    # Each SMS's commit took the mark of the one before it; the last mark still rides.
    await outcomes.until(lambda: all("sent" in outcomes.of(m) for m in ids[:-1]))
    assert world.store.writer.transactions - before == len(ids)
    assert Message.get_by_id(ids[-1]).state == "pending"
    assert "sent" not in outcomes.of(ids[-1])
    # It is never sent again meanwhile, whatever wakes the pump.
    world.store.writer.commit_riders_now()
    await outcomes.until(lambda: "sent" in outcomes.of(ids[-1]))
    assert Message.get_by_id(ids[-1]).state == "sent"
    assert len(world.requests("addMessage")) == len(ids)


async def test_a_sims_next_message_waits_for_the_last_ones_mark(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SIM's messages go one after the other, each only once the one before it is
    # recorded as sent: a store that fails stops the SIM after one message (as when each
    # mark was awaited), and the queue drains without waiting for the mark's deadline
    # (made an hour here: only the wait's own nudge can commit the marks in time).
    monkeypatch.setattr("agent.store.store.MARK_SENT_WITHIN", 3600.0)
    await online(world, A)
    ids = [await world.receive(A, f"code {n}") for n in range(5)]
    outcomes = Outcomes()
    world.start(pump_for(world, outcomes).run())
    # Each mark but the last was committed by the next message's wait for it.
    await outcomes.until(lambda: all("sent" in outcomes.of(m) for m in ids[:-1]))
    await outcomes.until(lambda: ids[-1] in outcomes.accepted)
    world.store.writer.commit_riders_now()  # the last one's deadline is an hour away
    await outcomes.until(lambda: "sent" in outcomes.of(ids[-1]))
    assert [m.text for m in world.standin.state.messages] == [f"code {n}" for n in range(5)]
    rows = list(DeliveryAttempt.select().where(DeliveryAttempt.message.in_(ids)))
    assert len(rows) == 5  # one attempt each: nothing went twice
