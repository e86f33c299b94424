"""The link's one state machine (docs/uplink.md, "Link health"): one probe while the link
is down, a fresh SMS as an immediate probe, everything resumed by the first success, the
store-not-writable pause, and scheduling that ignores the wall clock.

Back-offs here are an hour long on purpose: a test that passes within its few seconds
shows that nothing waited for the back-off (or for the wall clock)."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest

from agent.errors import DiskFull, UplinkAccountError, UplinkTransient
from agent.status import UplinkCondition
from agent.store.models import DeliveryAttempt, Message
from agent.uplink import transient_backoff
from agent.uplink.numbers import NumbersSync
from agent.uplink.policy import store_probe
from agent.uplink.state import UplinkTracker
from agent.uplink.takeoff import TakeOffMarks, TakeOffPoller
from tests.uplink.test_pump import NUMBERS, A, B, C, online, pump_for
from tests.uplink.world import WAIT, Outcomes, World, sim_status, world

__all__ = ["world"]  # the fixture, imported for pytest

HOUR = transient_backoff(initial=3600, cap=3600, jitter=0.0)
FAST_STORE = store_probe(initial=0.01, cap=0.05)


class Wall:
    """A wall clock the test sets; the monotonic clock stays the event loop's."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def sent_texts(world: World, iccid: str) -> list[str]:
    return [m.text for m in world.standin.state.messages if m.number == NUMBERS[iccid]]


async def set_query_only(world: World, on: bool) -> None:
    """Make the writer's own connection refuse every write (SQLite's ``query_only``): the
    store's real code path meets SQLITE_READONLY, as on a read-only file system."""
    database = world.store.writer._database  # the writer's connection is in its thread
    await world.store.writer.submit(
        lambda: database.execute_sql(f"PRAGMA query_only = {int(on)}"), "query_only", bare=True
    )


# --- the state machine ----------------------------------------------------------------------


def test_the_state_machine_one_condition_at_a_time() -> None:
    now = [1000.0]
    state = UplinkTracker(clock=lambda: now[0])
    seen: list[UplinkCondition] = []
    state.on_change(lambda snapshot: seen.append(snapshot.condition))
    down = UplinkTransient("addMessage: ConnectError", code="ConnectError")
    refused = UplinkAccountError("addMessage: HTTP 401", code="ERROR_WRONG_KEY", status=401)

    state.backing_off(down)
    assert (state.link_down, state.paused, state.link_failures) == (True, False, 1)
    state.backing_off(down)
    assert state.link_failures == 2
    state.succeeded()  # any success: the link is up for everyone
    assert (state.link_down, state.link_failures) == (False, 0)

    assert state.pause(refused) is True
    state.backing_off(down)  # a transient failure does not end an account pause
    assert state.snapshot.condition is UplinkCondition.PAUSED
    now[0] = 2000.0
    state.reached()  # OnlineSim answered about a request: link and account work
    assert (state.snapshot.condition, state.snapshot.since) == (UplinkCondition.OK, 2000.0)
    assert state.snapshot.last_success_at == 1000.0  # nothing was uploaded by that

    state.backing_off(down)
    state.store_unwritable(DiskFull("mark message #1 sent: the data folder is full"))
    # The store wins: it is why nothing goes out, whatever the link says.
    snapshot = state.snapshot
    assert (snapshot.condition, snapshot.code) == (UplinkCondition.STORE_NOT_WRITABLE, "DiskFull")
    assert snapshot.health()["state"] == "store_not_writable"
    assert state.store_paused
    assert state.link_down
    state.succeeded()
    assert state.snapshot.condition is UplinkCondition.STORE_NOT_WRITABLE
    state.store_writable()
    assert state.snapshot.condition is UplinkCondition.OK
    assert seen == [
        UplinkCondition.BACKING_OFF,
        UplinkCondition.BACKING_OFF,
        UplinkCondition.OK,
        UplinkCondition.PAUSED,
        UplinkCondition.PAUSED,
        UplinkCondition.OK,
        UplinkCondition.BACKING_OFF,
        UplinkCondition.STORE_NOT_WRITABLE,
        UplinkCondition.STORE_NOT_WRITABLE,
        UplinkCondition.OK,
    ]


# --- link down: one probe, fresh SMS at once --------------------------------------------------


def test_a_failure_of_a_call_that_was_out_when_another_succeeded_leaves_the_link_up() -> None:
    # A connect refused just before the link came back, its answer handled just after a
    # take-off poll went through: stale news. Taking the link down again on it would make
    # the pump and the numbers list wait out their back-offs with the link up.
    state = UplinkTracker()
    seen = state.successes
    state.succeeded()
    took_it_down = state.backing_off(
        UplinkTransient("refused", code="ConnectError"), successes_seen=seen
    )
    assert not took_it_down
    assert not state.link_down
    assert state.snapshot.condition is UplinkCondition.OK
    assert state.snapshot.last_error == "refused"  # still told, as the last error
    # A call that started after the success and failed is news: the link is down.
    assert state.backing_off(
        UplinkTransient("refused", code="ConnectError"), successes_seen=state.successes
    )
    assert state.link_down


async def test_a_fresh_sms_goes_up_at_once_when_the_link_is_back_whatever_the_backoff(
    world: World,
) -> None:
    await online(world, A, B, C)
    outcomes = Outcomes()
    state = UplinkTracker()
    world.start(pump_for(world, outcomes, policy=HOUR, state=state).run())
    await world.standin.set_faults(down=True)
    backlog = [await world.receive(A, "a1")]
    await outcomes.until(lambda: state.link_down)
    backlog += [await world.receive(A, "a2"), await world.receive(B, "b1", slot="usb-1.2")]
    # Each SMS stored while down made one probe at once (A's first, then B's), and each
    # failed: the scheduled probe's back-off is an hour, so no other call went.
    await outcomes.until(lambda: [o for _, o in outcomes.seen].count("retry") == 3)
    for message in backlog:
        assert Message.get_by_id(message).next_attempt_at is None
    retries_while_down = [o for _, o in outcomes.seen].count("retry")

    await world.standin.set_faults(down=False)
    await world.receive(C, "fresh", slot="usb-1.3")
    await world.until(lambda standin: len(standin.messages) == 4)
    assert sent_texts(world, A) == ["a1", "a2"]  # order per SIM kept
    assert sent_texts(world, B) == ["b1"]
    assert sent_texts(world, C) == ["fresh"]
    assert state.snapshot.condition is UplinkCondition.OK
    assert retries_while_down == 3  # none more while down
    # The down port logged none of the calls while down. (Under load a keep-alive
    # connection the outage broke can fail once after it, as on a real site: that call is
    # not in the port's log either, and its message goes again with the others.)
    assert len(world.requests("addMessage")) == 4


async def test_while_down_one_scheduled_probe_at_a_time(world: World) -> None:
    await online(world, A, B, C)
    for iccid, slot in ((A, "usb-1.1"), (B, "usb-1.2"), (C, "usb-1.3")):
        await world.receive(iccid, f"{iccid[-1]}1", slot=slot)
    await world.standin.set_faults(error_rate=1.0, latency=0.05)
    outcomes = Outcomes()
    quick = transient_backoff(initial=0.01, cap=0.01, jitter=0.0)
    world.start(pump_for(world, outcomes, policy=quick).run())
    # The first scan sends all three (the link was up); after that only probes.
    await world.until(lambda _standin: len(world.requests("addMessage")) >= 10)
    await world.stop_tasks()
    probes = world.requests("addMessage")[3:10]  # the last may have been cut by the stop
    # One probe at a time: each starts after the one before it was answered.
    for earlier, later in itertools.pairwise(probes):
        assert earlier.answered_monotonic is not None
        assert later.received_monotonic >= earlier.answered_monotonic
    assert {r.status for r in probes[:-1]} <= {500, 502, 503}
    counts = await world.store.outbox_counts()
    assert (counts.pending, counts.backing_off) == (3, 0)


async def test_the_first_success_of_another_part_resumes_every_sim_and_the_numbers_list(
    world: World,
) -> None:
    for iccid, slot in ((A, "usb-1.1"), (B, "usb-1.2")):
        await world.add_sim(iccid, NUMBERS[iccid], slot=slot)
        world.modems[slot] = sim_status(slot, iccid, NUMBERS[iccid])
    state = UplinkTracker()
    await world.standin.set_faults(down=True)
    numbers = NumbersSync(
        world.client, world.store, world.live, policy=HOUR, state=state, start_grace=0
    )
    outcomes = Outcomes()
    world.start(numbers.run())
    world.start(pump_for(world, outcomes, policy=HOUR, state=state, numbers=numbers).run())
    await world.receive(A, "a1")
    await world.receive(B, "b1", slot="usb-1.2")
    await outcomes.until(lambda: len(outcomes.seen) == 2)
    assert state.link_down

    await world.standin.set_faults(down=False)
    # No new SMS, the pump's and the numbers loop's back-offs an hour away: a take-off
    # poll that succeeds is enough for the list to go up and every SIM to drain.
    poller = TakeOffPoller(
        world.client, TakeOffMarks(world.store), numbers.holders, sum_rub=50, interval=600,
        state=state,
    )  # fmt: skip
    await poller.poll_once()
    await world.until(lambda standin: len(standin.messages) == 2 and len(standin.online) == 2)
    assert sorted(m.text for m in world.standin.state.messages) == ["a1", "b1"]


async def test_a_no_number_resync_goes_at_once_while_the_numbers_loop_backs_off(
    world: World,
) -> None:
    await world.add_sim(A, NUMBERS[A])
    world.modems["usb-1.1"] = sim_status("usb-1.1", A, NUMBERS[A])
    await world.standin.set_faults(down=True)
    numbers = NumbersSync(world.client, world.store, world.live, policy=HOUR, start_grace=0)
    world.start(numbers.run())
    await world.standin.set_faults(down=False)
    async with asyncio.timeout(WAIT):
        await numbers.resync()
    assert NUMBERS[A] in world.standin.state.online


# --- the store cannot write -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["read-only", "full"])
async def test_a_store_that_cannot_write_pauses_the_uplink_and_nothing_goes_twice(
    world: World, how: str
) -> None:
    await online(world, A, B)
    outcomes = Outcomes()
    state = UplinkTracker()
    pump = pump_for(world, outcomes, state=state, store_policy=FAST_STORE)
    backlog = [await world.receive(A, f"a{n}") for n in range(3)]
    backlog += [await world.receive(B, f"b{n}", slot="usb-1.2") for n in range(3)]
    database = world.store.writer._database
    if how == "read-only":
        await set_query_only(world, True)
    else:
        ballast = await world.receive(C, "ballast", slot="usb-1.3")  # no number: never sent

        def limit() -> None:
            # The file may not grow by a page: writes that need one meet SQLITE_FULL.
            (pages,) = database.execute_sql("PRAGMA page_count").fetchone()
            database.execute_sql(f"PRAGMA max_page_count = {pages}")

        def attempt_row() -> None:  # the row mark_sent adds, to fill the room left
            DeliveryAttempt.create(
                message=ballast, at=datetime.now(UTC), outcome="sent", http_status=200
            )

        await world.store.writer.submit(limit, "limit the file", bare=True)
        for _ in range(100_000):
            try:
                await world.store.writer.submit(attempt_row, "ballast")
            except DiskFull:
                break
        else:
            pytest.fail("the page limit never filled")
    world.start(pump.run())
    await outcomes.until(lambda: "unrecorded" in [o for _, o in outcomes.seen])
    assert state.snapshot.condition is UplinkCondition.STORE_NOT_WRITABLE
    assert not world.store.writable
    # The store is probed only when no request is in flight: from then on, what reached
    # OnlineSim is what was in flight when the write failed (the other SIM's request may
    # still have been on its way when the first "unrecorded" came).
    await outcomes.until(lambda: outcomes.of(0).count("store probe") >= 1)
    calls_while_paused = len(world.requests("addMessage"))
    # Only what was in flight when the write failed went up: one per SIM at most.
    assert calls_while_paused <= 2
    assert len(pump.unrecorded) <= 2
    await outcomes.until(lambda: outcomes.of(0).count("store probe") >= 3)
    assert len(world.requests("addMessage")) == calls_while_paused  # nothing sent meanwhile

    if how == "read-only":
        await set_query_only(world, False)
    else:
        await world.store.writer.submit(
            lambda: database.execute_sql("PRAGMA max_page_count = 1073741823"),
            "no limit",
            bare=True,
        )
    await outcomes.until(lambda: all("sent" in outcomes.of(m) for m in backlog))
    # Each SMS reached OnlineSim exactly once: the accepted-but-unrecorded ones were
    # recorded, not sent again.
    assert sorted(m.text for m in world.standin.state.messages) == [
        "a0", "a1", "a2", "b0", "b1", "b2",
    ]  # fmt: skip
    assert len(world.requests("addMessage")) == 6
    assert all(Message.get_by_id(m).state == "sent" for m in backlog)
    assert state.snapshot.condition is UplinkCondition.OK


async def test_the_unrecorded_set_is_bounded_by_the_requests_in_flight(world: World) -> None:
    await online(world, A, B, C)
    outcomes = Outcomes()
    pump = pump_for(world, outcomes, max_in_flight=2, store_policy=FAST_STORE)
    for iccid, slot in ((A, "usb-1.1"), (B, "usb-1.2"), (C, "usb-1.3")):
        for n in range(4):
            await world.receive(iccid, f"{iccid[-1]}{n}", slot=slot)
    await set_query_only(world, True)
    world.start(pump.run())
    await outcomes.until(lambda: [o for _, o in outcomes.seen].count("unrecorded") == 2)
    await outcomes.until(lambda: outcomes.of(0).count("store probe") >= 3)
    # Two requests in flight when the first write failed: two kept, and nothing more sent
    # while the store cannot write (12 SMS wait).
    assert len(pump.unrecorded) == 2
    assert len(world.requests("addMessage")) == 2


# --- clocks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("jump", [-3600.0, +3600.0])
async def test_a_wall_clock_jump_makes_nothing_wait(world: World, jump: float) -> None:
    await world.add_sim(A, NUMBERS[A])  # not online at the stand-in: NO_NUMBER
    wall = Wall()
    outcomes = Outcomes()
    short = transient_backoff(initial=0.3, cap=0.3, jitter=0.0)
    world.start(pump_for(world, outcomes, policy=short, clock=wall).run())
    message = await world.receive(A, "code 1")
    await outcomes.until(lambda: outcomes.of(message) == ["retry"])
    wall.offset = jump  # NTP sets the clock an hour back (or forward)
    await online(world, A)
    # Due 0.3 s after the failure on the monotonic clock, whatever the wall clock says.
    await outcomes.until(lambda: "sent" in outcomes.of(message))
    assert [m.text for m in world.standin.state.messages] == ["code 1"]


async def test_a_retry_time_written_under_a_wrong_clock_is_capped_at_start(world: World) -> None:
    await online(world, A)
    message = await world.receive(A, "code 1")
    # Written while the clock was an hour ahead: read literally, it would wait an hour.
    await world.store.schedule_retry(message, 1, time.time() + 3600, "NO_NUMBER: earlier")
    outcomes = Outcomes()
    short = transient_backoff(initial=0.05, cap=0.05, jitter=0.0)
    world.start(pump_for(world, outcomes, policy=short).run())
    await outcomes.until(lambda: outcomes.of(message) == ["sent"])
    row = Message.get_by_id(message)
    assert row.sent_at < datetime.now(UTC) + timedelta(seconds=1)
    history = DeliveryAttempt.select().where(DeliveryAttempt.message == message)
    assert [attempt.outcome for attempt in history.order_by(DeliveryAttempt.id)] == [
        "retry",
        "sent",
    ]


async def test_fresh_sms_failing_in_an_outage_do_not_push_the_probe_to_the_cap(
    world: World,
) -> None:
    """Found by make chaos: 30 SMS in a 5xx stretch each failed as a fresh probe and each
    grew the link's back-off, so the next probe was 5 minutes away when the link was back
    and no new SMS came to probe sooner."""
    await online(world, A, B)
    outcomes = Outcomes()
    growing = transient_backoff(initial=0.05, cap=3600, jitter=0.0)
    world.start(pump_for(world, outcomes, policy=growing).run())
    await world.standin.set_faults(error_rate=1.0)
    for n in range(20):
        await world.receive((A, B)[n % 2], f"code {n}", slot=f"usb-1.{n % 2 + 1}")
    await outcomes.until(lambda: [o for _, o in outcomes.seen].count("retry") >= 20)
    await world.standin.set_faults(clear=True)
    # No new SMS: only the scheduled probe can find the link back, within its own
    # back-off (0.05 s doubling per scheduled probe), not an hour.
    await world.until(lambda standin: len(standin.messages) == 20)
    assert sent_texts(world, A) == [f"code {n}" for n in range(0, 20, 2)]
